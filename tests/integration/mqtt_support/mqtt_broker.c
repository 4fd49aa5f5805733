#define _GNU_SOURCE
#include "mqtt_broker.h"

#include "mqtt_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int test_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool port_accepts(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int test_broker_init(struct test_broker *b, const char *exe)
{
    memset(b, 0, sizeof *b);
    b->exe = exe;
    snprintf(b->dir, sizeof b->dir, "/tmp/gw-mqtt-XXXXXX");
    if (!mkdtemp(b->dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(b->conf_path, sizeof b->conf_path, "%s/mosquitto.conf", b->dir);
    snprintf(b->log_path, sizeof b->log_path, "%s/mosquitto.log", b->dir);
    return 0;
}

int test_broker_start(struct test_broker *b, const char *extra)
{
    if (!b->exe || access(b->exe, X_OK) != 0) {
        fprintf(stderr, "mosquitto not executable: %s\n", b->exe ? b->exe : "(null)");
        return -1;
    }
    if (extra)
        snprintf(b->extra, sizeof b->extra, "%s", extra);
    if (!b->port)
        b->port = free_port();
    if (!b->port)
        return -1;
    FILE *f = fopen(b->conf_path, "w");
    if (!f)
        return -1;
    struct passwd *pw = getpwuid(geteuid());
    /* Running as root, mosquitto would switch to user "mosquitto" and lose access to the
     * mkdtemp dir: stay the current user. */
    fprintf(f, "user %s\npersistence false\nlog_dest file %s\nlog_type all\n"
               "listener %u 127.0.0.1\n%s\n",
            pw ? pw->pw_name : "root", b->log_path, (unsigned)b->port,
            b->extra[0] ? b->extra : "allow_anonymous true");
    fclose(f);

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
            dup2(devnull, STDERR_FILENO);
        }
        execl(b->exe, b->exe, "-c", b->conf_path, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    uint64_t deadline = test_now_ms() + 10000;
    while (test_now_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            b->pid = 0;
            fprintf(stderr, "mosquitto exited early; log:\n");
            test_sh("cat %s >&2", b->log_path);
            return -1;
        }
        if (port_accepts(b->port))
            return 0;
        pause_ms(20);
    }
    fprintf(stderr, "mosquitto did not open port %u in time\n", (unsigned)b->port);
    test_broker_stop(b, true);
    return -1;
}

void test_broker_stop(struct test_broker *b, bool hard)
{
    if (!b->pid)
        return;
    kill(b->pid, hard ? SIGKILL : SIGTERM);
    uint64_t deadline = test_now_ms() + 5000;
    for (;;) {
        int st;
        pid_t r = waitpid(b->pid, &st, WNOHANG);
        if (r == b->pid || (r < 0 && errno == ECHILD))
            break;
        if (test_now_ms() > deadline) {
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &st, 0);
            break;
        }
        pause_ms(10);
    }
    b->pid = 0;
}

bool test_broker_log_contains(struct test_broker *b, const char *text, uint32_t timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    char line[1024];
    do {
        FILE *f = fopen(b->log_path, "r");
        if (f) {
            bool found = false;
            while (!found && fgets(line, sizeof line, f))
                found = strstr(line, text) != NULL;
            fclose(f);
            if (found)
                return true;
        }
        pause_ms(20);
    } while (test_now_ms() < deadline);
    return false;
}

void test_broker_cleanup(struct test_broker *b)
{
    test_broker_stop(b, true);
    /* GW_KEEP_MQTT_DIR=1 keeps the config and broker log for a post-mortem. */
    const char *keep = getenv("GW_KEEP_MQTT_DIR");
    if (keep && keep[0] == '1')
        fprintf(stderr, "broker files kept in %s\n", b->dir);
    else if (b->dir[0] && strncmp(b->dir, "/tmp/gw-mqtt-", 13) == 0)
        test_sh("rm -rf '%s'", b->dir);
    b->dir[0] = '\0';
}

int test_make_certs(const char *d)
{
    const char *q = ">/dev/null 2>&1";
    if (test_sh("cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=gw-test-ca "
                "-keyout ca.key -out ca.crt %s",
                d, q))
        return -1;
    if (test_sh("cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca "
                "-keyout other-ca.key -out other-ca.crt %s",
                d, q))
        return -1;
    if (test_sh("cd '%s' && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
                "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key "
                "-out server.csr %s && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
                "-CAcreateserial -days 2 -extfile san.ext -out server.crt %s",
                d, q, q))
        return -1;
    if (test_sh("cd '%s' && printf 'subjectAltName=DNS:wrong.example\\n' > wrong.ext && "
                "openssl req -newkey rsa:2048 -nodes -subj /CN=wrong.example -keyout wrong.key "
                "-out wrong.csr %s && openssl x509 -req -in wrong.csr -CA ca.crt -CAkey ca.key "
                "-CAcreateserial -days 2 -extfile wrong.ext -out wrong.crt %s",
                d, q, q))
        return -1;
    if (test_sh("cd '%s' && openssl req -newkey rsa:2048 -nodes -subj /CN=tinybms-gw-client "
                "-keyout client.key -out client.csr %s && openssl x509 -req -in client.csr "
                "-CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt %s",
                d, q, q))
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ subscriber */

struct test_sub {
    struct mosquitto *mosq;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct test_msg *msgs;
    int count;
    int cap;
    bool subscribed;
    bool connected;
    char filter[256];
};

static void sub_on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    struct test_sub *s = obj;
    if (rc == 0)
        mosquitto_subscribe(mosq, NULL, s->filter, 1);
    pthread_mutex_lock(&s->lock);
    s->connected = rc == 0;
    pthread_mutex_unlock(&s->lock);
}

static void sub_on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted)
{
    (void)mosq;
    (void)mid;
    (void)n;
    (void)granted;
    struct test_sub *s = obj;
    pthread_mutex_lock(&s->lock);
    s->subscribed = true;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

static void sub_on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m)
{
    (void)mosq;
    struct test_sub *s = obj;
    pthread_mutex_lock(&s->lock);
    if (s->count == s->cap) {
        int ncap = s->cap ? s->cap * 2 : 256;
        struct test_msg *n = realloc(s->msgs, (size_t)ncap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&s->lock);
            return;
        }
        s->msgs = n;
        s->cap = ncap;
    }
    struct test_msg *t = &s->msgs[s->count++];
    snprintf(t->topic, sizeof t->topic, "%s", m->topic);
    int len = m->payloadlen < (int)sizeof t->payload - 1 ? m->payloadlen : (int)sizeof t->payload - 1;
    if (len > 0)
        memcpy(t->payload, m->payload, (size_t)len);
    t->payload[len > 0 ? len : 0] = '\0';
    t->len = m->payloadlen;
    t->qos = m->qos;
    t->retain = m->retain;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

struct test_sub *test_sub_create(uint16_t port, const char *filter, const char *user,
                                 const char *pass)
{
    mosquitto_lib_init();
    struct test_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    snprintf(s->filter, sizeof s->filter, "%s", filter);
    char id[64];
    snprintf(id, sizeof id, "test-sub-%ld-%p", (long)getpid(), (void *)s);
    s->mosq = mosquitto_new(id, true, s);
    if (!s->mosq)
        goto err;
    mosquitto_connect_callback_set(s->mosq, sub_on_connect);
    mosquitto_subscribe_callback_set(s->mosq, sub_on_subscribe);
    mosquitto_message_callback_set(s->mosq, sub_on_message);
    if (user)
        mosquitto_username_pw_set(s->mosq, user, pass);
    if (mosquitto_connect(s->mosq, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS)
        goto err;
    if (mosquitto_loop_start(s->mosq) != MOSQ_ERR_SUCCESS)
        goto err;
    uint64_t deadline = test_now_ms() + 5000;
    pthread_mutex_lock(&s->lock);
    while (!s->subscribed && test_now_ms() < deadline) {
        pthread_mutex_unlock(&s->lock);
        pause_ms(10);
        pthread_mutex_lock(&s->lock);
    }
    bool ok = s->subscribed;
    pthread_mutex_unlock(&s->lock);
    if (ok)
        return s;
    mosquitto_disconnect(s->mosq);
    mosquitto_loop_stop(s->mosq, false);
err:
    if (s->mosq)
        mosquitto_destroy(s->mosq);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    free(s);
    return NULL;
}

void test_sub_destroy(struct test_sub *s)
{
    if (!s)
        return;
    mosquitto_disconnect(s->mosq);
    mosquitto_loop_stop(s->mosq, false);
    mosquitto_destroy(s->mosq);
    free(s->msgs);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    free(s);
}

static int count_locked(struct test_sub *s, const char *topic, struct test_msg *last)
{
    int n = 0;
    for (int i = 0; i < s->count; i++) {
        if (!topic || strcmp(s->msgs[i].topic, topic) == 0) {
            n++;
            if (last)
                *last = s->msgs[i];
        }
    }
    return n;
}

int test_sub_wait(struct test_sub *s, const char *topic, int count, uint32_t timeout_ms,
                  struct test_msg *out)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    pthread_mutex_lock(&s->lock);
    int n;
    while ((n = count_locked(s, topic, out)) < count && test_now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->changed, &s->lock, &ts);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

int test_sub_get(struct test_sub *s, const char *topic, int index, struct test_msg *out)
{
    int rc = -1;
    pthread_mutex_lock(&s->lock);
    int n = 0;
    for (int i = 0; i < s->count; i++) {
        if (strcmp(s->msgs[i].topic, topic) == 0 && n++ == index) {
            *out = s->msgs[i];
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int test_sub_count(struct test_sub *s, const char *topic)
{
    pthread_mutex_lock(&s->lock);
    int n = count_locked(s, topic, NULL);
    pthread_mutex_unlock(&s->lock);
    return n;
}

void test_sub_clear(struct test_sub *s)
{
    pthread_mutex_lock(&s->lock);
    s->count = 0;
    pthread_mutex_unlock(&s->lock);
}

int test_sub_publish(struct test_sub *s, const char *topic, const char *payload, bool retain)
{
    return mosquitto_publish(s->mosq, NULL, topic, (int)strlen(payload), payload, 1, retain) ==
                   MOSQ_ERR_SUCCESS
               ? 0
               : -1;
}

void inbox_cb(const struct mqtt_client_message *m, void *ctx)
{
    struct inbox *in = ctx;
    pthread_mutex_lock(&in->lock);
    if (in->count < 64) {
        size_t n = m->len < 511 ? m->len : 511;
        memcpy(in->payloads[in->count], m->payload, n);
        in->payloads[in->count][n] = '\0';
        in->count++;
    }
    pthread_mutex_unlock(&in->lock);
}

int inbox_wait(struct inbox *in, int count, uint32_t timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&in->lock);
        int n = in->count;
        pthread_mutex_unlock(&in->lock);
        if (n >= count || test_now_ms() > deadline)
            return n;
        usleep(10000);
    }
}
