"""One rule for non-finite numbers in JSON (utils/jsonable.py): written as "inf" / "-inf" / "nan" by the
results writer and by certificates alike, and read back as floats."""
import json
import math

import numpy as np

from utils import accountant as A
from utils import jsonable, results, summary


def test_results_and_certificates_write_infinity_the_same_way(tmp_path):
    obj = {"a": math.inf, "b": -np.float32("inf"), "c": math.nan, "d": [1.5, np.inf], "e": None}
    want = {"a": "inf", "b": "-inf", "c": "nan", "d": [1.5, "inf"], "e": None}
    path = tmp_path / "m.json"
    results.write_json(str(path), obj)
    assert json.loads(path.read_text()) == want
    cert = A.certificate(consts=A.make_constants(n=100, lam=1e-3, M=1.0), eps=math.inf, alpha=math.nan,
                         K=[1, 2], sigma=0.0, extra_list=[np.inf, -np.inf])
    assert (cert["eps"], cert["alpha"], cert["extra_list"]) == ("inf", "nan", ["inf", "-inf"])
    json.dumps(cert, allow_nan=False)


def test_readers_take_the_strings_back_as_floats():
    assert jsonable.number("inf") == math.inf and jsonable.number("-inf") == -math.inf
    assert math.isnan(jsonable.number("nan")) and jsonable.number(None) is None and jsonable.number(2) == 2.0
    assert jsonable.numbers({"eps": "inf", "bound": "A-LSI", "K": 3}) == {"eps": math.inf, "bound": "A-LSI", "K": 3}
    assert summary._scalar({"eps": "inf"}, "eps") == math.inf and summary._scalar({"eps": "x"}, "eps") is None
    assert float("inf") == math.inf      # what figures_audit reads with float()
