"""Paper A's comparisons on multiclass data (softmax regression, M = 2): the modes of baseline.py.

    python baseline_multiclass.py --dataset CIFAR10_MULTI              # Fig 3a (appendix)
    python baseline_multiclass.py --dataset CIFAR10_MULTI --sequential2 1
    python baseline_multiclass.py --find_k 1 --n 50000                 # no data needed
"""
import sys

import baseline

main = baseline.build_main(multiclass=True)

if __name__ == "__main__":
    sys.exit(main())
