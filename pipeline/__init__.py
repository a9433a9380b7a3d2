import os

# numpy asks the kernel for transparent huge pages on large arrays; where the kernel compacts memory to find
# them, the first touch of a decoded volume stalls: two 512x512x300 CTs built 1.2-1.4 s slower (of 28-30 s),
# six 256x256x100 no faster. Set before numpy is imported (workers: the Dockerfile); a setting given is kept.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
