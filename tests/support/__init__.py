"""Code the test suites share (and the benchmarks borrow): the reference
model of the classifiers, scapy-built frames, a bench that runs the compiled
programs with BPF_PROG_TEST_RUN, and the drop-list lookup emulated over
table contents. None of it ships with xdpctl."""
