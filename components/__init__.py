import os

# OpenMP threads that spin while waiting collapse when another process holds a core: a
# 2-thread CNN epoch measured 17.9 s against 5.9 s with passive waiting (5.2 s on 1 thread).
# Set before torch loads, for every stage process (`python -m components.<stage>`).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
