"""The binaries (train, evaluate, analyze, log_z_spread) and the papers' configs.

Importing this package first keeps TensorFlow's C++ INFO lines (its oneDNN banner, printed once per
TF library load) out of the binaries' output: TensorFlow only reads the data here. A value of
$TF_CPP_MIN_LOG_LEVEL of your own wins.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
