package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// trustDomain is the trust domain every plugin in the run serves.
const trustDomain = "bench.example.org"

// launch starts the plugin binary against c as SPIRE would and configures it
// for serverID. It returns the plugin and how long Configure took.
func (r *runner) launch(ctx context.Context, c cloud, serverID, extra string) (*pluginhost.Plugin, time.Duration, error) {
	env := c.env()
	if r.profileDir != "" {
		env = append(env, profileEnv+"="+r.profilePath(c.name()+"-"+serverID))
	}
	p, took, err := r.start(ctx, r.binary, env, c.pluginData(serverID, extra))
	if err != nil {
		r.progress("%s: %v", c.name(), err)
	}
	return p, took, err
}

// start launches the plugin at path with env added to its environment, as
// SPIRE would, and configures it with pluginData. It returns the plugin and
// how long Configure took.
func (r *runner) start(ctx context.Context, path string, env []string, pluginData string) (*pluginhost.Plugin, time.Duration, error) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, err := pluginhost.Start(sctx, pluginhost.Options{Path: path, Env: env})
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	if err := p.Configure(sctx, trustDomain, pluginData); err != nil {
		p.Close()
		return nil, 0, fmt.Errorf("configure: %w%s", err, lastLogs(p))
	}
	return p, time.Since(start), nil
}

// lastLogs returns the plugin's last log lines for an error message.
func lastLogs(p *pluginhost.Plugin) string {
	logs := p.Logs()
	if len(logs) > 3 {
		logs = logs[len(logs)-3:]
	}
	var b strings.Builder
	for _, l := range logs {
		fmt.Fprintf(&b, "; plugin log: %v", l)
	}
	return b.String()
}

// procStatus reads a field of /proc/<pid>/status in kB (VmHWM, VmRSS).
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the plugin's status: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procCPU returns the user plus system CPU time a process has used, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks).
func procCPU(pid int, tick time.Duration) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the plugin's CPU time: %w", err)
	}
	// The command name (field 2) may contain spaces; fields resume after ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed CPU times in /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * tick, nil
}

// clockTick returns the length of a /proc clock tick (USER_HZ), asking
// getconf and falling back to Linux's universal 100 Hz.
func clockTick(ctx context.Context) time.Duration {
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && hz > 0 {
			return time.Second / time.Duration(hz)
		}
	}
	return 10 * time.Millisecond
}
