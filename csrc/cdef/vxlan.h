/* Vxlan ports: the VTEP object a vxlan port's params point to (vs_vxlan.h). */
#define VS_PORT_VXLAN ...
#define VS_VXLAN_VTEPS_MAX ...
#define VS_VXLAN_UDP_MAX ...
#define VS_VXLAN_OVERHEAD_V4 ...
#define VS_VXLAN_OVERHEAD_V6 ...
#define VS_VTEP_TX_PACKETS ...
#define VS_VTEP_TX_BYTES ...
#define VS_VTEP_RX_PACKETS ...
#define VS_VTEP_RX_BYTES ...
#define VS_VTEP_N_COUNTERS ...

struct vs_vxlan_params {
    int family;
    uint8_t local_ip[16];
    uint16_t dstport;
    uint16_t src_port_min;
    uint16_t src_port_max;
    int learning;
    int tx_fd;
    uint32_t n_udp;
    int udp_fds[32];
    uint16_t udp_ports[32];
    uint32_t n_ctx;
    uint32_t vlan_vni[4096];
};

struct vs_vtep_info {
    int family;
    uint8_t addr[16];
    int flood;
    uint32_t flood_vnis;
    uint64_t counters[4];
};

struct vs_vxlan *vs_vxlan_new(const struct vs_vxlan_params *);
void vs_vxlan_free(struct vs_vxlan *);
int vs_vxlan_add_vtep(struct vs_vxlan *, const uint8_t *addr, int flood);
int vs_vxlan_set_flood(struct vs_vxlan *, uint32_t vtep, int flood);
int vs_vxlan_set_flood_vni(struct vs_vxlan *, uint32_t vtep, uint32_t vni, int flood);
uint32_t vs_vxlan_n_vteps(const struct vs_vxlan *);
int vs_vxlan_vtep_get(const struct vs_vxlan *, uint32_t vtep, struct vs_vtep_info *out);
uint16_t vs_vxlan_src_port(const struct vs_vxlan *, const uint8_t *frame, uint32_t len);
