/* Live capture with BPF filters run by the workers (vs_capture.h). */
#define VS_CAP_RX ...
#define VS_CAP_TX ...
#define VS_CAP_DROPS ...
#define VS_CAP_RING_BYTES ...
#define VS_MAX_CAPTURES ...

struct vs_bpf_insn {
    uint16_t code;
    uint8_t jt;
    uint8_t jf;
    uint32_t k;
};

struct vs_cap_record {
    uint32_t rec_len;
    uint32_t caplen;
    uint32_t wire_len;
    uint16_t port_id;
    uint8_t dir;
    uint8_t pad;
    int32_t reason;
    uint32_t pad2;
    uint64_t ts_ns;
};

struct vs_capture_stats {
    uint64_t captured;
    uint64_t dropped;
    uint64_t filtered;
};

struct vs_capture;

struct vs_capture *vs_capture_new(const struct vs_switch *, uint32_t port_id,
                                  uint32_t dirs, uint32_t snaplen,
                                  const struct vs_bpf_insn *prog, uint32_t n_insns);
void vs_capture_free(struct vs_capture *);
int vs_config_add_capture(struct vs_config *, struct vs_capture *);
size_t vs_capture_read(struct vs_capture *, uint8_t *out, size_t out_len);
void vs_capture_get_stats(const struct vs_capture *, struct vs_capture_stats *);
uint32_t vs_bpf_run(const struct vs_bpf_insn *prog, uint32_t n_insns,
                    const uint8_t *pkt, uint32_t len);
int vs_bpf_check(const struct vs_bpf_insn *prog, uint32_t n_insns);
