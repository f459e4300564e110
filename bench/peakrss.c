/* Run a command and report its exact peak resident set size, for the harness.
 *
 * Usage: peakrss OUTFILE PROGRAM [ARGS...]; writes "peak_kib samples status" to OUTFILE
 * (status: the exit status, or 128 + signal).
 *
 * Why not VmHWM or ru_maxrss: the kernel keeps RSS in per-CPU counters and folds a CPU's
 * share into the total only every 32 pages or so. /proc/PID/status sums them when it
 * prints VmRSS, but the high-water mark is recorded (before each unmap) from the unfolded
 * total, so VmHWM can miss the peak by tens of pages per CPU. For a program that maps and
 * unmaps small groups all the time (mallocng) the error is the whole measurement: stock
 * musl's tree workload printed a VmHWM of 128 KiB while its VmRSS, read after building a
 * tree, was 316 KiB.
 *
 * What this does instead: RSS only goes up between system calls (page faults), and only
 * comes down in calls that unmap or discard pages (no swap on a benchmark machine). A
 * seccomp filter stops the program, under ptrace, at each such call: munmap, madvise,
 * process_madvise, mremap, brk, mmap with MAP_FIXED (which replaces what was there), and
 * exit/exit_group. There the exact VmRSS is read (/proc/TID/statm, summed counters), and
 * the peak is the largest reading. Other calls run untraced. Timings under the tracer are
 * meaningless: the harness times its runs without it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
#define AUDIT_ARCH_SELF AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_SELF AUDIT_ARCH_AARCH64
#else
#error "peakrss: unsupported architecture"
#endif

#define NR(n) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (n), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE)

static void install_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_SELF, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		NR(__NR_munmap),
		NR(__NR_madvise),
		NR(__NR_process_madvise),
		NR(__NR_mremap),
		NR(__NR_brk),
		NR(__NR_exit),
		NR(__NR_exit_group),
		/* mmap: only with MAP_FIXED (low word of the flags argument) */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3])),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MAP_FIXED, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof f / sizeof f[0], f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		perror("peakrss: seccomp");
		_exit(127);
	}
}

/* Resident pages of the process thread `tid` belongs to, or -1. */
static long resident(pid_t tid)
{
	char path[64], buf[128];
	snprintf(path, sizeof path, "/proc/%d/statm", (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) return -1;
	buf[n] = 0;
	long size, rss;
	return sscanf(buf, "%ld %ld", &size, &rss) == 2 ? rss : -1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fputs("usage: peakrss OUTFILE PROGRAM [ARGS...]\n", stderr);
		return 2;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("peakrss: fork");
		return 2;
	}
	if (pid == 0) {
		if (ptrace(PTRACE_TRACEME, 0, 0, 0)) {
			perror("peakrss: ptrace");
			_exit(127);
		}
		raise(SIGSTOP);
		install_filter();
		execv(argv[2], argv + 2);
		perror("peakrss: exec");
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFSTOPPED(st)) {
		fputs("peakrss: the child did not stop\n", stderr);
		return 2;
	}
	long opts = PTRACE_O_TRACESECCOMP | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
		    PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
	if (ptrace(PTRACE_SETOPTIONS, pid, 0, (void *)opts) || ptrace(PTRACE_CONT, pid, 0, 0)) {
		perror("peakrss: ptrace setup");
		return 2;
	}
	long peak = 0, samples = 0, page_kib = sysconf(_SC_PAGESIZE) / 1024;
	int status = -1;
	for (;;) {
		pid_t t = waitpid(-1, &st, __WALL);
		if (t < 0) {
			if (errno == EINTR) continue;
			break; /* no children left */
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			if (t == pid) status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			continue;
		}
		if (!WIFSTOPPED(st)) continue;
		int sig = WSTOPSIG(st), event = st >> 16, deliver = 0;
		if (event == PTRACE_EVENT_SECCOMP) {
			long r = resident(t);
			if (r > peak) peak = r;
			samples++;
		} else if (event == 0 && sig != SIGSTOP && sig != SIGTRAP) {
			deliver = sig; /* a real signal: pass it on (new threads start with SIGSTOP) */
		}
		ptrace(PTRACE_CONT, t, 0, (void *)(long)deliver);
	}
	FILE *f = fopen(argv[1], "w");
	if (!f) {
		perror("peakrss: OUTFILE");
		return 2;
	}
	fprintf(f, "%ld %ld %d\n", peak * page_kib, samples, status);
	return fclose(f) || status < 0 ? 2 : 0;
}
