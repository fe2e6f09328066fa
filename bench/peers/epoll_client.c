/* The practical limit for a request/response load client on Linux: per thread one
 * level-triggered epoll loop over its share of the connections, one read per readiness into a
 * stack buffer, every echoed byte checked against what was sent, and the next message written as
 * soon as the last one is whole. What bench/compare.sh measures slabd-load against.
 *
 * Usage: epoll_client HOST PORT CONNECTIONS SIZE SECONDS [THREADS]
 * Connects everything, then counts the echoes completed during SECONDS and prints one line:
 * "msgs/s R msgs N seconds S mismatches M errors E". Exit status 1 on a mismatch or an error. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    uint32_t id;
    uint32_t seq;    /* the message in flight */
    size_t sent;     /* bytes of it written */
    size_t received; /* bytes of its echo checked */
};

static struct sockaddr_in target;
static size_t size;
static atomic_int measuring; /* 0: connecting, 1: counting, 2: over */

struct worker {
    pthread_t thread;
    struct conn* conns;
    size_t count;
    unsigned long long msgs; /* echoes completed while measuring */
    unsigned long long mismatches;
    unsigned long long errors;
    atomic_int ready;
};

/* Byte i of message seq on connection id: changes with each of the three. */
static inline unsigned char pattern(uint32_t id, uint32_t seq, size_t i) {
    return (unsigned char)(id * 131u + seq * 31u + (uint32_t)i * 7u + (uint32_t)(i >> 8));
}

static int send_rest(struct conn* c, unsigned char* scratch) {
    while (c->sent < size) {
        size_t n = size - c->sent;
        if (n > 65536) n = 65536;
        for (size_t i = 0; i < n; ++i) scratch[i] = pattern(c->id, c->seq, c->sent + i);
        const ssize_t w = send(c->fd, scratch, n, MSG_NOSIGNAL);
        if (w < 0) return errno == EAGAIN ? 0 : -1;
        c->sent += (size_t)w;
    }
    return 0;
}

static void* run(void* arg) {
    struct worker* w = arg;
    const int ep = epoll_create1(0);
    static __thread unsigned char buffer[65536];
    static __thread unsigned char scratch[65536];
    const int one = 1;
    for (size_t k = 0; k < w->count; ++k) {
        struct conn* c = &w->conns[k];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr*)&target, sizeof target) != 0) {
            perror("connect");
            exit(1);
        }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    atomic_store(&w->ready, 1);
    while (atomic_load(&measuring) == 0) usleep(1000);
    for (size_t k = 0; k < w->count; ++k) {
        struct conn* c = &w->conns[k];
        /* Sockets stay blocking for connect, non-blocking from here on. */
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        if (send_rest(c, scratch) != 0) ++w->errors;
    }
    struct epoll_event events[256];
    while (atomic_load_explicit(&measuring, memory_order_relaxed) == 1) {
        const int n = epoll_wait(ep, events, 256, 100);
        for (int e = 0; e < n; ++e) {
            struct conn* c = events[e].data.ptr;
            const ssize_t got = recv(c->fd, buffer, sizeof buffer, 0);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                ++w->errors;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            size_t at = 0;
            while (at < (size_t)got) {
                size_t take = size - c->received;
                if (take > (size_t)got - at) take = (size_t)got - at;
                for (size_t i = 0; i < take; ++i)
                    if (buffer[at + i] != pattern(c->id, c->seq, c->received + i)) {
                        ++w->mismatches;
                        break;
                    }
                at += take;
                c->received += take;
                if (c->received == size) {
                    if (atomic_load_explicit(&measuring, memory_order_relaxed) == 1) ++w->msgs;
                    c->received = c->sent = 0;
                    ++c->seq;
                    if (send_rest(c, scratch) != 0) ++w->errors;
                }
            }
            if (c->sent < size && send_rest(c, scratch) != 0) ++w->errors;
        }
    }
    return NULL;
}

int main(int argc, char** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS SIZE SECONDS [THREADS]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    target.sin_family = AF_INET;
    target.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &target.sin_addr) != 1) {
        fprintf(stderr, "epoll_client: HOST must be an IPv4 address\n");
        return 2;
    }
    const size_t connections = strtoul(argv[3], NULL, 10);
    size = strtoul(argv[4], NULL, 10);
    const double seconds = atof(argv[5]);
    const size_t threads = argc > 6 ? strtoul(argv[6], NULL, 10) : 1;
    if (connections == 0 || size == 0 || seconds <= 0 || threads == 0 || threads > connections) {
        fprintf(stderr, "epoll_client: bad arguments\n");
        return 2;
    }
    struct conn* conns = calloc(connections, sizeof *conns);
    struct worker* workers = calloc(threads, sizeof *workers);
    for (size_t k = 0; k < connections; ++k) conns[k].id = (uint32_t)k;
    /* Thread t gets a contiguous share of the connections. */
    for (size_t t = 0, first = 0; t < threads; ++t) {
        const size_t share = connections / threads + (t < connections % threads ? 1 : 0);
        workers[t].conns = conns + first;
        workers[t].count = share;
        first += share;
        pthread_create(&workers[t].thread, NULL, run, &workers[t]);
    }
    for (size_t t = 0; t < threads; ++t)
        while (!atomic_load(&workers[t].ready)) usleep(1000);
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    atomic_store(&measuring, 1);
    struct timespec nap = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&nap, &nap) != 0 && errno == EINTR) {
    }
    atomic_store(&measuring, 2);
    clock_gettime(CLOCK_MONOTONIC, &end);
    unsigned long long msgs = 0, mismatches = 0, errors = 0;
    for (size_t t = 0; t < threads; ++t) {
        pthread_join(workers[t].thread, NULL);
        msgs += workers[t].msgs;
        mismatches += workers[t].mismatches;
        errors += workers[t].errors;
    }
    const double took =
        (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    printf("msgs/s %.0f msgs %llu seconds %.3f mismatches %llu errors %llu\n", (double)msgs / took,
           msgs, took, mismatches, errors);
    return mismatches != 0 || errors != 0 ? 1 : 0;
}
