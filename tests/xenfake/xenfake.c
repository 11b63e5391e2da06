/*
 * xenfake.c - LD_PRELOAD shim that lets Xen 4.17's XenStore daemons
 * (C xenstored and OCaml oxenstored) run on a plain Linux machine with
 * no hypervisor, for pyxs's test suite.
 *
 * The daemons only need the hypervisor for two things: to learn that
 * domain 0 exists, and to reach domain 0's shared-memory ring and event
 * channel. Neither matters to clients that talk over the Unix socket,
 * so everything below answers "yes, that worked" with harmless dummies.
 * Symbols here are unversioned; the dynamic linker binds the daemons'
 * versioned references (VERS_1.0, VERS_4.17.0) to them all the same.
 *
 * Made-up guest domains: when XENFAKE_GUESTS names a directory, a test
 * harness can let the daemons serve an unprivileged domain N without a
 * hypervisor (see "Guests" below): N's ring page is the file
 * $XENFAKE_GUESTS/N/page, its event channel is a pair of Unix datagram
 * sockets, and $XENFAKE_GUESTS/N/dying makes the domain-info calls report
 * N as dying.
 *
 * Build: gcc -O2 -shared -fPIC -o libxenfake.so xenfake.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- Guests ------------------------------------------------------------
 * Everything a made-up guest needs lives under $XENFAKE_GUESTS:
 *   N/page       the 4096-byte XenStore ring page of domain N, mapped
 *                MAP_SHARED in place of a grant (C xenstored) or foreign
 *                (oxenstored) mapping, so the harness sees the same bytes;
 *   N/dying      present: the domain-info calls say N is dying;
 *   N/notify     a datagram socket the harness binds: every
 *                xenevtchn_notify() on N's port sends one datagram there;
 *   evtchn       a datagram socket this library binds as the event-channel
 *                fd.  A datagram is two native uint32s, (kind, value):
 *                (0, N) means "domain N notified its port", (1, virq)
 *                raises that VIRQ (3 = VIRQ_DOM_EXC makes the daemons
 *                look for dying domains).  xenevtchn_pending() takes one
 *                datagram and returns the local port it stands for.
 * Without XENFAKE_GUESTS nothing of this exists and mapping a guest fails
 * with ENOSYS, as before. */
#define GUEST_PAGE 4096
#define MAX_PORTS 1024
#define MAX_VIRQ 32

enum { KICK_GUEST = 0, KICK_VIRQ = 1 };

static int port_domid[MAX_PORTS];  /* local port -> domid + 1 (0: unbound) */
static int virq_port[MAX_VIRQ];    /* virq -> local port (0: unbound) */

static int guest_path(char *buf, size_t size, uint32_t domid, const char *leaf)
{
    const char *dir = getenv("XENFAKE_GUESTS");
    int n;
    if (!dir || !*dir)
        return -1;
    if (domid == UINT32_MAX)
        n = snprintf(buf, size, "%s/%s", dir, leaf);
    else
        n = snprintf(buf, size, "%s/%u/%s", dir, domid, leaf);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

static int guest_dying(uint32_t domid)
{
    char path[256];
    int saved_errno = errno, dying;
    dying = guest_path(path, sizeof(path), domid, "dying") == 0 &&
            access(path, F_OK) == 0;
    errno = saved_errno; /* a successful hypercall leaves errno alone */
    return dying;
}

static void *map_guest_page(uint32_t domid, int prot)
{
    char path[256];
    void *addr;
    int fd;
    if (guest_path(path, sizeof(path), domid, "page") != 0) {
        errno = ENOSYS;
        return NULL;
    }
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        errno = ENOSYS; /* no such guest: as without a harness */
        return NULL;
    }
    addr = mmap(NULL, GUEST_PAGE, prot, MAP_SHARED, fd, 0);
    close(fd);
    return addr == MAP_FAILED ? NULL : addr;
}

static int bind_evtchn_socket(void)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd;
    if (guest_path(addr.sun_path, sizeof(addr.sun_path), UINT32_MAX, "evtchn") != 0)
        return -1;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(addr.sun_path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void notify_guest(uint32_t domid)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    static int fd = -1;
    char byte = 1;
    int saved_errno = errno;
    if (guest_path(addr.sun_path, sizeof(addr.sun_path), domid, "notify") != 0)
        return;
    if (fd < 0)
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* A full or missing receiver loses the notification, as a masked
     * event channel would coalesce it: the guest rechecks the ring. */
    sendto(fd, &byte, 1, MSG_DONTWAIT, (struct sockaddr *)&addr, sizeof(addr));
    /* Xen's notify cannot fail this way; C xenstored sends its leftover
     * errno as the answer to some malformed requests, so leave it as is. */
    errno = saved_errno;
}

/* ---- libxenctrl ------------------------------------------------------
 * Both daemons open an xc interface at start-up and refuse to run when
 * /dev/xen/privcmd is missing. Any non-NULL pointer will do: the only
 * calls made through it are the domain-info queries faked below. */
static int xc_dummy;

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{
    (void)logger; (void)dombuild_logger; (void)flags;
    return &xc_dummy;
}

int xc_interface_close(void *xch) { (void)xch; return 0; }

/* C xenstored asks whether a domain is still alive with
 * xc_domain_getinfo(xch, domid, 1, info) and checks info->domid. The
 * struct (xc_dominfo_t) starts with uint32 domid, uint32 ssidref, a word
 * of flag bits (dying, crashed, shutdown, ...) and uint32 shutdown_reason.
 * We fill only those 16 bytes: the domain exists and is running. */
int xc_domain_getinfo(void *xch, uint32_t first, unsigned max, void *info)
{
    (void)xch;
    if (max == 0)
        return 0;
    memset(info, 0, 16);
    memcpy(info, &first, sizeof(first));
    if (guest_dying(first))
        ((uint8_t *)info)[8] |= 1; /* the "dying" bit-field comes first */
    return 1;
}

/* oxenstored uses xc_domain_getinfolist instead. Its struct
 * (xen_domctl_getdomaininfo) starts with uint16 domain, uint16 pad and
 * uint32 flags; 8 bytes of domid-then-zeros say "alive, not dying". */
int xc_domain_getinfolist(void *xch, uint32_t first, unsigned max, void *info)
{
    uint16_t id = (uint16_t)first;
    (void)xch;
    if (max == 0)
        return 0;
    uint32_t flags = guest_dying(first) ? 1 : 0; /* XEN_DOMINF_dying */
    memset(info, 0, 8);
    memcpy(info, &id, sizeof(id));
    memcpy((uint8_t *)info + 4, &flags, sizeof(flags));
    return 1;
}

/* oxenstored maps an introduced guest's ring page with
 * xc_map_foreign_range: a made-up guest's page file, else (no such
 * guest) fail with ENOSYS, so that INTRODUCE is answered with an error
 * instead of crashing on the dummy handle. Its OCaml binding then reads xc_get_last_error() to build the
 * message; an all-zero record (code 0, "no error") makes it use errno. */
void *xc_map_foreign_range(void *xch, uint32_t dom, int size, int prot,
                           unsigned long mfn)
{
    (void)xch; (void)mfn;
    if (size != GUEST_PAGE) {
        errno = EINVAL;
        return NULL;
    }
    return map_guest_page(dom, prot);
}

static struct { int code; char message[1024]; } xc_no_error;

const void *xc_get_last_error(void *xch) { (void)xch; return &xc_no_error; }

/* ---- libxengnttab ----------------------------------------------------
 * C xenstored opens a grant-table handle to map the rings of guests it is
 * told about (INTRODUCE): a made-up guest's page file, else nothing to
 * map, so mapping fails with ENOSYS and the introduction is refused. */
static int gnttab_dummy;

void *xengnttab_open(void *logger, unsigned flags)
{
    (void)logger; (void)flags;
    return &gnttab_dummy;
}
int xengnttab_close(void *h) { (void)h; return 0; }
int xengnttab_set_max_grants(void *h, uint32_t n) { (void)h; (void)n; return 0; }
void *xengnttab_map_grant_ref(void *h, uint32_t domid, uint32_t ref, int prot)
{
    (void)h; (void)ref;
    return map_guest_page(domid, prot);
}
int xengnttab_unmap(void *h, void *addr, uint32_t count)
{
    (void)h;
    return munmap(addr, (size_t)count * GUEST_PAGE);
}

/* ---- libxenevtchn ----------------------------------------------------
 * The daemons put the event-channel fd into their poll set and only call
 * xenevtchn_pending() when it becomes readable. Without guests, a
 * non-blocking eventfd that nobody ever signals is a valid fd that stays
 * quiet forever; with XENFAKE_GUESTS, the first handle's fd is the
 * "evtchn" datagram socket described under "Guests". */
struct fake_evtchn { int fd; };
static int next_port = 10;

void *xenevtchn_fdopen(void *logger, int fd, unsigned flags)
{
    struct fake_evtchn *h = malloc(sizeof(*h));
    (void)logger; (void)flags;
    if (h)
        h->fd = fd;
    return h;
}

void *xenevtchn_open(void *logger, unsigned flags)
{
    static int socket_taken;
    int fd = -1;
    if (!socket_taken) {
        fd = bind_evtchn_socket();
        socket_taken = fd >= 0;
    }
    if (fd < 0)
        fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? NULL : xenevtchn_fdopen(logger, fd, flags);
}

int xenevtchn_close(void *p)
{
    struct fake_evtchn *h = p;
    if (h) {
        close(h->fd);
        free(h);
    }
    return 0;
}

int xenevtchn_fd(void *p) { return ((struct fake_evtchn *)p)->fd; }

/* Binding hands out fresh port numbers and remembers what each stands
 * for, so that a harness's datagram can be turned into the right port. */
static int new_port(void)
{
    if (next_port >= MAX_PORTS) {
        errno = ENOSPC;
        return -1;
    }
    return next_port++;
}

int xenevtchn_bind_virq(void *h, unsigned virq)
{
    int port = new_port();
    (void)h;
    if (port > 0 && virq < MAX_VIRQ)
        virq_port[virq] = port;
    return port;
}
int xenevtchn_bind_interdomain(void *h, uint32_t dom, uint32_t port)
{
    int local = new_port();
    (void)h; (void)port;
    if (local > 0)
        port_domid[local] = (int)dom + 1;
    return local;
}
int xenevtchn_bind_unbound_port(void *h, uint32_t dom) { (void)h; (void)dom; return new_port(); }
int xenevtchn_unbind(void *h, uint32_t port)
{
    (void)h;
    if (port < MAX_PORTS)
        port_domid[port] = 0;
    return 0;
}
int xenevtchn_notify(void *h, uint32_t port)
{
    (void)h;
    if (port < MAX_PORTS && port_domid[port])
        notify_guest((uint32_t)port_domid[port] - 1);
    return 0;
}
int xenevtchn_unmask(void *h, uint32_t port) { (void)h; (void)port; return 0; }

/* One datagram per call. C xenstored aborts when this fails while the fd
 * was readable, so a datagram naming no bound port still returns a port:
 * VIRQ_DOM_EXC's, whose only effect is a harmless re-check of domains. */
int xenevtchn_pending(void *p)
{
    struct fake_evtchn *h = p;
    uint32_t kick[2];
    int port;
    if (recv(h->fd, kick, sizeof(kick), MSG_DONTWAIT) != (ssize_t)sizeof(kick)) {
        errno = EAGAIN;
        return -1;
    }
    if (kick[0] == KICK_VIRQ && kick[1] < MAX_VIRQ && virq_port[kick[1]])
        return virq_port[kick[1]];
    if (kick[0] == KICK_GUEST)
        for (port = 0; port < MAX_PORTS; port++)
            if (port_domid[port] == (int)kick[1] + 1)
                return port;
    return virq_port[3];
}

/* ---- /proc/xen/xsd_port and /proc/xen/xsd_kva -------------------------
 * On a Xen dom0 the kernel publishes the event channel and the shared page
 * of domain 0's own XenStore ring here; the daemons read the port number
 * and mmap the page. A memfd gives them the same shapes: the text "1"
 * (oxenstored's integer parser rejects a trailing newline) and one page of
 * zeros, i.e. an empty ring that no one will ever write to. */
static int memfd_with(const char *name, const void *data, size_t len, size_t size)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) != 0 ||
        (len && pwrite(fd, data, len, 0) != (ssize_t)len)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int fake_proc_xen(const char *path)
{
    if (path && strcmp(path, "/proc/xen/xsd_port") == 0)
        return memfd_with("xsd_port", "1", 1, 1);
    if (path && strcmp(path, "/proc/xen/xsd_kva") == 0)
        return memfd_with("xsd_kva", NULL, 0, 4096);
    return -2; /* not ours */
}

/* C xenstored calls open(), OCaml's runtime calls open64(); both pass
 * every other path through to the real libc function. */
#define OPEN_WRAPPER(NAME)                                                   \
    int NAME(const char *path, int flags, ...)                               \
    {                                                                        \
        static int (*real)(const char *, int, ...);                          \
        mode_t mode = 0;                                                     \
        int fd = fake_proc_xen(path);                                        \
        if (fd != -2)                                                        \
            return fd;                                                       \
        if (flags & (O_CREAT | O_TMPFILE)) {                                 \
            va_list ap;                                                      \
            va_start(ap, flags);                                             \
            mode = va_arg(ap, mode_t);                                       \
            va_end(ap);                                                      \
        }                                                                    \
        if (!real)                                                           \
            real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #NAME); \
        return real(path, flags, mode);                                      \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

/* ---- setrlimit ---------------------------------------------------------
 * oxenstored raises RLIMIT_NOFILE's hard limit to fs.nr_open, which needs
 * CAP_SYS_RESOURCE (missing in containers) and kills it with EPERM. On
 * EPERM we retry once with both limits clamped to the current hard limit. */
int setrlimit(__rlimit_resource_t res, const struct rlimit *want)
{
    static int (*real)(__rlimit_resource_t, const struct rlimit *);
    struct rlimit now, clamped;
    if (!real)
        real = (int (*)(__rlimit_resource_t, const struct rlimit *))
            dlsym(RTLD_NEXT, "setrlimit");
    if (real(res, want) == 0)
        return 0;
    if (errno != EPERM || getrlimit(res, &now) != 0)
        return -1;
    clamped = *want;
    if (clamped.rlim_max > now.rlim_max)
        clamped.rlim_max = now.rlim_max;
    if (clamped.rlim_cur > clamped.rlim_max)
        clamped.rlim_cur = clamped.rlim_max;
    return real(res, &clamped);
}
