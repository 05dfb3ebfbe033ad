/* Port mirroring (vs_mirror.h). */
#define VS_MAX_MIRRORS ...

struct vs_mirror_params {
    uint32_t id;
    uint32_t output_port;
    uint32_t snaplen;
    int all_vlans;
    uint64_t vlans[64];
    uint64_t src_ports[16];
    uint64_t dst_ports[16];
};

struct vs_mirror_stats {
    uint64_t packets;
    uint64_t dropped;
};

int vs_config_add_mirror(struct vs_config *, const struct vs_mirror_params *);
int vs_switch_mirror_stats(const struct vs_switch *, uint32_t id,
                           struct vs_mirror_stats *);
