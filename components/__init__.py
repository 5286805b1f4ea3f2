import os

# OpenMP threads spin a long while (libgomp: 300,000 rounds) before they sleep. When another
# process holds a core, 2 torch threads then wait on each other: a 2-thread CNN epoch took
# 17.9 s against 5.9 s with short spins. OMP_WAIT_POLICY=PASSIVE avoids that too, but cost
# trigger-word training 43% on a quiet machine; a short spin costs nothing there.
# Set before torch loads, for every stage process (`python -m components.<stage>`).
os.environ.setdefault("GOMP_SPINCOUNT", "3000")
