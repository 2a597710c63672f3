"""mmlgc.ops.timing: the allocator pin of the benchmark tools keeps freed
memory for reuse, so a timed call does not page-fault its tensors in."""
import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB tensor a few times (glibc's heap settles in
# two or three), then counts the minor page faults of doing it once more;
# prints them (and the pin's result when asked to pin).
PROBE = r'''
import resource, sys
import torch
from mmlgc.ops.timing import pin_allocator
if sys.argv[1] == 'pin':
    print(pin_allocator())
def fill():
    torch.ones(16 << 20).sum()
for _ in range(4):
    fill()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fill()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def faults_of_a_settled_call(mode):
    return subprocess.run([sys.executable, '-c', PROBE, mode], check=True,
                          capture_output=True, text=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='glibc allocator')
def test_pinned_allocator_reuses_a_large_buffer():
    pinned, faults = faults_of_a_settled_call('pin')
    assert pinned == 'True'
    # 64 MiB in 4 KiB pages is 16384 faults when the buffer is mapped anew.
    assert int(faults) < 1000
    (default_faults,) = faults_of_a_settled_call('default')
    assert int(default_faults) > 8000
