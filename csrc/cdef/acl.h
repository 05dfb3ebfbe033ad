/* cdef/acl.h: vs_acl.h and vs_acl_sessions.h as cffi sees them. */
#define VS_ACL_IN ...
#define VS_ACL_OUT ...
#define VS_ACL_ALLOW ...
#define VS_ACL_DENY ...
#define VS_ACL_METER ...
#define VS_ACL_F_IP ...
#define VS_ACL_F_IP6 ...
#define VS_ACL_F_L4 ...
#define VS_ACL_F_L4_MISSING ...
#define VS_ACL_F_FRAG ...
#define VS_ACL_LINEAR_MIN ...
#define VS_ACL_LINEAR_MAX ...
#define VS_ACL_MAX_RULES ...
#define VS_ACL_SESSIONS_MAX ...
#define VS_ACL_TCP_OPENING_S ...
#define VS_ACL_TCP_CLOSING_S ...
#define VS_ACL_TCP_SYN_OUT ...
#define VS_ACL_TCP_SYN_IN ...
#define VS_ACL_TCP_FIN_OUT ...
#define VS_ACL_TCP_FIN_IN ...
#define VS_ACL_TCP_RST ...

struct vs_acl_key {
    uint8_t local_ip[16];
    uint8_t remote_ip[16];
    uint8_t local_mac[6];
    uint8_t remote_mac[6];
    uint16_t ethertype;
    uint16_t vlan;
    uint16_t local_port;
    uint16_t remote_port;
    uint8_t proto;
    uint8_t icmp_type;
    uint8_t flags;
    uint8_t tcp_flags;
};

struct vs_acl_rule {
    uint64_t id;
    uint32_t weight;
    uint8_t dirs;
    uint8_t action;
    uint8_t stateful;
    uint32_t idle_timeout_s;
    struct vs_acl_key key;
    struct vs_acl_key mask;
    uint16_t local_port_lo, local_port_hi;
    uint16_t remote_port_lo, remote_port_hi;
};

struct vs_acl_verdict {
    int action;
    int32_t rule;
};

struct vs_acl;
struct vs_acl_sessions;

struct vs_acl_session_info {
    uint32_t port;
    uint8_t proto;
    uint8_t ip6;
    uint8_t dir;
    uint8_t tcp;
    uint8_t local_ip[16];
    uint8_t remote_ip[16];
    uint16_t local_port;
    uint16_t remote_port;
    uint32_t timeout_s;
    uint64_t rule_id;
    uint64_t age_ns;
    uint64_t idle_ns;
};

int vs_acl_new(const struct vs_acl_rule *rules, uint32_t n_rules,
               int default_action, uint32_t n_ctx, struct vs_acl **out);
void vs_acl_free(struct vs_acl *);
uint32_t vs_acl_n_rules(const struct vs_acl *);
uint32_t vs_acl_n_tables(const struct vs_acl *, int dir);
int vs_acl_default_action(const struct vs_acl *);
int vs_acl_has_dir(const struct vs_acl *, int dir);
int vs_acl_has_stateful(const struct vs_acl *);
void vs_acl_parse(const uint8_t *frame, uint32_t len, uint32_t type_off,
                  uint16_t vlan, int dir, struct vs_acl_key *out);
void vs_acl_key_flip(const struct vs_acl_key *in, struct vs_acl_key *out);
void vs_acl_classify(const struct vs_acl *, int dir,
                     const struct vs_acl_key *key, uint32_t ctx,
                     uint64_t bytes, int count, struct vs_acl_verdict *out);
int vs_acl_l4_deny_possible(const struct vs_acl *, int dir,
                            const struct vs_acl_key *key);
void vs_acl_counters(const struct vs_acl *, uint64_t *out);

int vs_acl_sessions_new(uint32_t capacity, struct vs_acl_sessions **out);
void vs_acl_sessions_free(struct vs_acl_sessions *);
uint32_t vs_acl_sessions_capacity(const struct vs_acl_sessions *);
uint32_t vs_acl_sessions_live(const struct vs_acl_sessions *);
int vs_acl_session_match(struct vs_acl_sessions *, uint32_t port,
                         const struct vs_acl_key *, int dir, uint64_t now_ns,
                         int update);
int vs_acl_session_open(struct vs_acl_sessions *, uint32_t port,
                        const struct vs_acl_key *, int dir, uint64_t rule_id,
                        uint32_t idle_timeout_s, uint64_t now_ns);
uint32_t vs_acl_sessions_expire(struct vs_acl_sessions *, uint64_t now_ns,
                                uint32_t *per_port);
uint32_t vs_acl_sessions_flush(struct vs_acl_sessions *, int32_t port,
                               uint32_t *per_port);
uint32_t vs_acl_sessions_prune(struct vs_acl_sessions *, uint32_t port,
                               const uint64_t *keep_ids, uint32_t n_keep,
                               uint32_t *per_port);
uint32_t vs_acl_sessions_dump(const struct vs_acl_sessions *, int32_t port,
                              uint64_t now_ns, struct vs_acl_session_info *out,
                              uint32_t max);
void vs_acl_sessions_count(const struct vs_acl_sessions *, uint64_t now_ns,
                           uint32_t *per_port);
