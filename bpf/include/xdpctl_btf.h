/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Puts the ABI enums and the sizes (xdpctl_abi.h, xdpctl_consts.h) into the
 * BTF of every object, so tests/unit/test_abi.py can compare the values the
 * compiler saw with xdpctl/abi.py.
 *
 * Clang writes BTF only for the types of globals, maps and functions, and
 * these enums are otherwise used in expressions alone; the one variable
 * below uses them all. Its section is neither a map nor a program: libbpf
 * skips it on load, as it does "license". It costs no instruction.
 */
#ifndef XDPCTL_BTF_H
#define XDPCTL_BTF_H

#include <bpf/bpf_helpers.h>

#include "xdpctl_abi.h"

struct xc_btf_enums {
	enum xc_consts consts;
	enum xc_stage stage;
	enum xc_l3 l3;
	enum xc_l4 l4;
	enum xc_dir dir;
	enum xc_action action;
	enum xc_policy policy;
	enum xc_dl_reason dl_reason;
	enum xc_lb_state lb_state;
	enum xc_lb_reason lb_reason;
	enum xc_hook_kind hook_kind;
	struct xc_sample sample; /* not a map value: its layout for the ABI test */
};

const struct xc_btf_enums xc_btf_enums SEC("xc_btf") = {};

#endif /* XDPCTL_BTF_H */
