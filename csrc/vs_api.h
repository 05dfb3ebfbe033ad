/* vs_api.h: everything the cffi module exposes, for the generated glue. */
#ifndef VS_API_H
#define VS_API_H 1

#include "vs_frame.h"
#include "vs_counters.h"
#include "vs_csum.h"
#include "vs_gso.h"
#include "vs_mac_table.h"
#include "vs_switch.h"
#include "vs_ring.h"
#include "vs_acl.h"
#include "vs_acl_sessions.h"
#include "vs_mirror.h"
#include "vs_capture.h"
#include "vs_trace.h"
#include "vs_vxlan.h"
#include "vs_vhost.h"

#endif /* vs_api.h */
