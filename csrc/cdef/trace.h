/* Packet trace through the real pipeline (vs_trace.h). */
#define VS_TRACE_N_STAGES ...

struct vs_trace_result {
    int32_t drop_reason;
    uint32_t n_egress;
    uint32_t egress[1024];
    uint32_t egress_frames[1024];
    uint32_t n_drops;
    uint32_t drop_port[64];
    int32_t drop_counter[64];
    uint32_t text_len;
    char text[16384];
};

int vs_switch_trace(struct vs_switch *, uint32_t port_id, const uint8_t *frame,
                    uint32_t len, const uint8_t *vnet, uint32_t vnet_len,
                    uint32_t now_s, struct vs_trace_result *);
const char *vs_trace_stage_name(int stage);
