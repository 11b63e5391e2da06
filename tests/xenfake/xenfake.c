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
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

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
    memset(info, 0, 8);
    memcpy(info, &id, sizeof(id));
    return 1;
}

/* oxenstored maps an introduced guest's ring page with
 * xc_map_foreign_range. There are no guests: fail with ENOSYS, so that
 * INTRODUCE is answered with an error instead of crashing on the dummy
 * handle. Its OCaml binding then reads xc_get_last_error() to build the
 * message; an all-zero record (code 0, "no error") makes it use errno. */
void *xc_map_foreign_range(void *xch, uint32_t dom, int size, int prot,
                           unsigned long mfn)
{
    (void)xch; (void)dom; (void)size; (void)prot; (void)mfn;
    errno = ENOSYS;
    return NULL;
}

static struct { int code; char message[1024]; } xc_no_error;

const void *xc_get_last_error(void *xch) { (void)xch; return &xc_no_error; }

/* ---- libxengnttab ----------------------------------------------------
 * C xenstored opens a grant-table handle to map the rings of guests it is
 * told about (INTRODUCE). With no guests there is nothing to map, so
 * mapping fails with ENOSYS and the introduction is refused. */
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
    (void)h; (void)domid; (void)ref; (void)prot;
    errno = ENOSYS;
    return NULL;
}
int xengnttab_unmap(void *h, void *addr, uint32_t count)
{
    (void)h; (void)addr; (void)count;
    return 0;
}

/* ---- libxenevtchn ----------------------------------------------------
 * The daemons put the event-channel fd into their poll set and only call
 * xenevtchn_pending() when it becomes readable. A non-blocking eventfd
 * that nobody ever signals is a valid fd that stays quiet forever. */
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
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
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

/* Binding hands out fresh dummy port numbers; nothing is ever delivered. */
int xenevtchn_bind_virq(void *h, unsigned virq) { (void)h; (void)virq; return next_port++; }
int xenevtchn_bind_interdomain(void *h, uint32_t dom, uint32_t port)
{
    (void)h; (void)dom; (void)port;
    return next_port++;
}
int xenevtchn_bind_unbound_port(void *h, uint32_t dom) { (void)h; (void)dom; return next_port++; }
int xenevtchn_unbind(void *h, uint32_t port) { (void)h; (void)port; return 0; }
int xenevtchn_notify(void *h, uint32_t port) { (void)h; (void)port; return 0; }
int xenevtchn_unmask(void *h, uint32_t port) { (void)h; (void)port; return 0; }
int xenevtchn_pending(void *h) { (void)h; errno = EAGAIN; return -1; }

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
