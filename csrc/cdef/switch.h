/* The switch object, config snapshots and counters (vs_switch.h). */
#define VS_MAX_PORTS ...
#define VS_MAX_WORKERS ...
#define VS_MAX_QUEUES ...
#define VS_BURST ...
#define VS_PORT_FD ...
#define VS_PORT_PACKET ...
#define VS_MODE_ACCESS ...
#define VS_MODE_TRUNK ...
#define VS_N_COUNTERS ...
#define VS_C_FIRST_DROP ...

struct vs_ring;
struct vs_acl;
#define VS_ACL_SESSIONS_DEFAULT ...
struct vs_vxlan;
struct vs_vhost;

struct vs_port_params {
    uint32_t id;
    int kind;
    int mode;
    uint16_t access_vlan;
    uint16_t native_vlan;
    uint64_t allowed[64];
    int up;
    uint32_t n_queues;
    int fds[16];
    struct vs_ring *rings[16];
    struct vs_vxlan *vxlan;
    struct vs_vhost *vhost;
    uint32_t vnet_hdr_len;
    int offload_csum;
    int offload_tso;
    uint32_t mtu;
    uint32_t n_allowed_macs;
    uint32_t max_macs;
    int dhcp_guard;
    int router_guard;
    uint32_t broadcast_pps;
    uint32_t multicast_pps;
    uint32_t unknown_unicast_pps;
    struct vs_acl *acl;
    uint64_t max_bps_out;
    uint64_t max_bps_in;
    uint64_t max_burst_bytes;
    int keep_counters;
    uint8_t allowed_macs[64][6];
};

struct vs_worker_stats {
    uint64_t busy_ns;
    uint64_t idle_ns;
    uint64_t polls;
    uint64_t frames;
    uint64_t batches_full;
    uint64_t quiescent;
};

struct vs_rxq_stats {
    uint64_t busy_ns;
    uint64_t frames;
    uint64_t polls;
};

struct vs_switch;
struct vs_config;

struct vs_config *vs_config_new(void);
int vs_config_add_port(struct vs_config *, const struct vs_port_params *);
int vs_config_assign_rxq(struct vs_config *, uint32_t worker, uint32_t port_id,
                         uint32_t queue);
void vs_config_free(struct vs_config *);

struct vs_switch *vs_switch_new(uint32_t n_workers, const int *cpus,
                                uint32_t mac_capacity);
int vs_switch_start(struct vs_switch *);
void vs_switch_stop(struct vs_switch *);
void vs_switch_free(struct vs_switch *);
uint32_t vs_switch_n_workers(const struct vs_switch *);
struct vs_mac_table *vs_switch_mac_table(struct vs_switch *);

void vs_switch_set_busy_poll(struct vs_switch *, uint32_t busy_poll_us);
int vs_switch_set_acl_sessions(struct vs_switch *, uint32_t capacity);
struct vs_acl_sessions *vs_switch_acl_sessions(struct vs_switch *);
int vs_switch_publish(struct vs_switch *, struct vs_config *);
uint64_t vs_switch_generation(const struct vs_switch *);
int vs_switch_poll_once(struct vs_switch *, uint32_t now_s);

void vs_switch_port_counters(const struct vs_switch *, uint32_t port_id,
                             uint64_t *out);
void vs_switch_rxq_stats(const struct vs_switch *, uint32_t port_id,
                         uint32_t queue, struct vs_rxq_stats *);
int vs_switch_worker_stats(const struct vs_switch *, uint32_t worker,
                           struct vs_worker_stats *);
const char *vs_counter_name(int counter);
const char *vs_counter_help(int counter);
