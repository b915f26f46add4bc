"""The L4 load balancer: Maglev tables and the flow hash (maglev), and the
packing of its maps (tables). The data plane is bpf/include/lb.h; docs/lb.md
describes both."""
