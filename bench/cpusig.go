package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azcloud "github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// Settings of measurement 8.
const (
	cpuSigners = 16                   // concurrent signers, as in issue 17's SPIRE comparison
	cpuLatency = 5 * time.Millisecond // added to every Sign
	cpuRounds  = 3                    // the four kinds of run take turns this many times
	// cpuAddedTarget is the most kmskeeper may add, plugin and host side
	// together, per signature (issue 17); cpuAddedAim is the aim.
	cpuAddedTarget = 100 * time.Microsecond
	cpuAddedAim    = 60 * time.Microsecond
)

// cpuPerSign measures 8: the CPU each process spends per signature. Each
// side runs in its own process, so that each is measured alone: the
// harness keeps only the emulator; a host child plays SPIRE (pluginhost:
// the go-plugin client calling SignData, and the Metrics host service) and
// launches the plugin binary; a raw-SDK child signs with the cloud SDK
// directly, as an application calling the SDK in its own process would,
// against the same emulator; two more host children launch the floor
// plugins (floorEnv) instead of kmskeeper. All children run the same
// closed loop (cpuSigners signers, +cpuLatency on every Sign), taking turns
// for cpuRounds rounds. What kmskeeper adds is the plugin's CPU per
// signature plus the host side's, less the raw SDK's; the floors split it
// into the boundary, the verification and kmskeeper's own. CPU is
// user+system time from /proc/<pid>/stat; the emulator's (getrusage of the
// harness) is shown for scale.
func (r *runner) cpuPerSign(ctx context.Context, c cloud) []Row {
	var rows []Row
	c.setLatency(opSign, cpuLatency, 0)
	defer c.clearLatency()
	for _, t := range []engine.KeyType{engine.ECP256, engine.RSA2048} {
		row, err := r.cpuRow(ctx, c, t)
		if err != nil {
			row = notMeasured(8, cpuLabel(t), c.name(), cpuTargetText(), err)
		}
		rows = append(rows, row)
	}
	return rows
}

// cpuShare is the CPU of one kind of run's processes, and the signatures
// they made.
type cpuShare struct {
	main, plugin, emulator time.Duration
	n                      int
}

func (s cpuShare) per(d time.Duration) time.Duration { return d / time.Duration(max(s.n, 1)) }

func (r *runner) cpuRow(ctx context.Context, c cloud, t engine.KeyType) (Row, error) {
	var hostEnv []string
	if r.profileDir != "" {
		hostEnv = append(hostEnv,
			profileEnv+"="+r.profilePath(fmt.Sprintf("%s-bench-cpu-%s", c.name(), keySlug(t))),
			hostProfileEnv+"="+r.profilePath(fmt.Sprintf("%s-host-%s", c.name(), keySlug(t))))
	}
	host, err := startSignerChild(ctx, c, "host", t, r.Race, append(hostEnv,
		pluginBinaryEnv+"="+r.binary, pluginDataEnv+"="+c.pluginData("bench-cpu-"+keySlug(t), "")))
	if err != nil {
		return Row{}, err
	}
	defer host.close()
	floor, err := r.startFloor(ctx, c, t, "floor", c.name())
	if err != nil {
		return Row{}, err
	}
	defer floor.close()
	floorV, err := r.startFloor(ctx, c, t, "floorv", c.name()+":verify")
	if err != nil {
		return Row{}, err
	}
	defer floorV.close()
	sdk, err := startSignerChild(ctx, c, "sdk", t, r.Race, nil)
	if err != nil {
		return Row{}, err
	}
	defer sdk.close()
	var plug, flr, flrV, base cpuShare
	for range cpuRounds {
		for _, run := range []struct {
			child *signerChild
			share *cpuShare
		}{{host, &plug}, {floor, &flr}, {floorV, &flrV}, {sdk, &base}} {
			got, err := run.child.measure(r.sz.concurrency, r.tick)
			if err != nil {
				return Row{}, err
			}
			run.share.main += got.main
			run.share.plugin += got.plugin
			run.share.emulator += got.emulator
			run.share.n += got.n
		}
	}
	verify, err := verifyCPU(t, r.sz.concurrency/4)
	if err != nil {
		return Row{}, err
	}
	sdkPer := base.per(base.main)
	both := func(s cpuShare) time.Duration { return s.per(s.plugin) + s.per(s.main) }
	added := both(plug) - sdkPer
	boundary := both(flr) - sdkPer
	verifying := both(flrV) - both(flr)
	own := both(plug) - both(flrV)
	return Row{ID: 8, Measurement: cpuLabel(t), Backend: c.name(), Target: cpuTargetText(), Verdict: verdict(added <= cpuAddedTarget),
		Value: fmt.Sprintf("kmskeeper adds %s (plugin %s + host side %s − raw SDK %s) = boundary %s (floor plugin %s + host side %s − raw SDK) + verification %s (verifying floor %s + %s − floor; the call alone %s) + kmskeeper's own %s (kmskeeper − verifying floor); emulator %s (kmskeeper runs) / %s (SDK runs); %d kmskeeper, %d floor, %d verifying-floor and %d SDK signatures, %d signers, +%v, tick %v",
			us(added), us(plug.per(plug.plugin)), us(plug.per(plug.main)), us(sdkPer),
			us(boundary), us(flr.per(flr.plugin)), us(flr.per(flr.main)),
			us(verifying), us(flrV.per(flrV.plugin)), us(flrV.per(flrV.main)), us(verify),
			us(own),
			us(plug.per(plug.emulator)), us(base.per(base.emulator)),
			plug.n, flr.n, flrV.n, base.n, cpuSigners, cpuLatency, r.tick)}, nil
}

// startFloor starts a host child whose plugin is this binary as the floor
// plugin (floorEnv=spec), profiled under name when profiles are asked for.
func (r *runner) startFloor(ctx context.Context, c cloud, t engine.KeyType, name, spec string) (*signerChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	env := []string{pluginBinaryEnv + "=" + self, floorEnv + "=" + spec}
	if r.profileDir != "" {
		env = append(env,
			profileEnv+"="+r.profilePath(fmt.Sprintf("%s-%s-%s", c.name(), name, keySlug(t))),
			hostProfileEnv+"="+r.profilePath(fmt.Sprintf("%s-%s-host-%s", c.name(), name, keySlug(t))))
	}
	child, err := startSignerChild(ctx, c, "host", t, r.Race, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return child, nil
}

func cpuLabel(t engine.KeyType) string {
	return fmt.Sprintf("8. CPU per signature, %v (plugin + host − raw SDK)", t)
}

func cpuTargetText() string {
	return fmt.Sprintf("added ≤ %d µs (aim %d µs)", cpuAddedTarget.Microseconds(), cpuAddedAim.Microseconds())
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// selfCPU is the harness's own user+system time.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// Environment of the signer children.
const (
	// signerEnv makes the bench binary (or its test binary) a signer child
	// instead of the harness: "<sdk|host>:<cloud>:<key type>:<signers>".
	signerEnv = "KMSKEEPER_BENCH_SIGNER"
	// pluginBinaryEnv and pluginDataEnv are the plugin the host child
	// launches and the plugin_data it configures.
	pluginBinaryEnv = "KMSKEEPER_BENCH_PLUGIN"
	pluginDataEnv   = "KMSKEEPER_BENCH_PLUGIN_DATA"
	// hostProfileEnv, when set, is where the host child writes its CPU
	// profile.
	hostProfileEnv = "KMSKEEPER_BENCH_HOST_CPUPROFILE"
)

// signerChild is a child process signing on command: a host child
// (pluginhost and the plugin it launched) or a raw-SDK signer.
type signerChild struct {
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	out       *bufio.Scanner
	pluginPID int // the host child's plugin; 0 for the SDK signer
}

// startSignerChild starts this very binary as a signer child of kind
// ("host" or "sdk") for cloud c and key type t, with the emulator's client
// environment and env. It returns once the child has its key and has
// warmed up.
func startSignerChild(ctx context.Context, c cloud, kind string, t engine.KeyType, race bool, env []string) (*signerChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), c.env()...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%s:%s:%d:%d", signerEnv, kind, c.name(), t, cpuSigners))
	if race {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the %s signer: %w", kind, err)
	}
	s := &signerChild{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	line, err := s.line()
	pid, ok := strings.CutPrefix(line, "ready ")
	if err == nil && ok {
		s.pluginPID, err = strconv.Atoi(pid)
	} else if err == nil {
		err = errors.New(line)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("%s signer: %w", kind, err)
	}
	return s, nil
}

func (s *signerChild) line() (string, error) {
	if !s.out.Scan() {
		if err := s.out.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	return s.out.Text(), nil
}

// measure has the child sign for d and returns the signatures made and
// the CPU the child, its plugin and the harness (the emulator) used.
func (s *signerChild) measure(d, tick time.Duration) (cpuShare, error) {
	var got cpuShare
	cpu := func() (main, plugin, emulator time.Duration, err error) {
		if main, err = procCPU(s.cmd.Process.Pid, tick); err != nil {
			return
		}
		if s.pluginPID != 0 {
			if plugin, err = procCPU(s.pluginPID, tick); err != nil {
				return
			}
		}
		emulator, err = selfCPU()
		return
	}
	m0, p0, e0, err := cpu()
	if err != nil {
		return got, err
	}
	if _, err := fmt.Fprintf(s.stdin, "%s\n", d); err != nil {
		return got, err
	}
	line, err := s.line()
	if err != nil {
		return got, err
	}
	n, ok := strings.CutPrefix(line, "done ")
	if !ok {
		return got, errors.New(line)
	}
	if got.n, err = strconv.Atoi(n); err != nil {
		return got, err
	}
	m1, p1, e1, err := cpu()
	got.main, got.plugin, got.emulator = m1-m0, p1-p0, e1-e0
	return got, err
}

func (s *signerChild) close() {
	s.stdin.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// signerMain is a signer child's main. A host child launches the plugin
// binary with pluginhost, as SPIRE does, configures it and creates a key;
// an SDK signer builds the raw SDK client from the environment the plugin
// gets and creates a key. Either then warms up, says "ready <plugin pid>"
// and, for every duration read from stdin, signs with closed-loop signers
// for that long and answers "done <signatures>", until stdin closes.
func signerMain(spec string) int {
	fail := func(err error) int {
		fmt.Printf("error %s\n", oneLine(err.Error()))
		return 1
	}
	parts := strings.Split(spec, ":")
	if len(parts) != 4 {
		return fail(fmt.Errorf("%s=%q: want kind:cloud:keytype:signers", signerEnv, spec))
	}
	kt, err1 := strconv.Atoi(parts[2])
	signers, err2 := strconv.Atoi(parts[3])
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	t := engine.KeyType(kt)
	ctx := context.Background()
	var (
		sign      signFunc
		pluginPID int
		err       error
	)
	switch parts[0] {
	case "host":
		var p *pluginhost.Plugin
		p, sign, err = hostSigner(ctx, t)
		if err != nil {
			return fail(err)
		}
		defer p.Close()
		pluginPID = p.PID()
		if path := os.Getenv(hostProfileEnv); path != "" {
			f, err := os.Create(path)
			if err != nil {
				return fail(err)
			}
			defer f.Close()
			// Started after the launch: the profile is the signing.
			if err := pprof.StartCPUProfile(f); err != nil {
				return fail(err)
			}
			defer pprof.StopCPUProfile()
		}
	case "sdk":
		sig, err := sdkSigner(ctx, parts[1], t)
		if err != nil {
			return fail(err)
		}
		sign = sig.signFunc()
	default:
		return fail(fmt.Errorf("%s: unknown signer kind %q", signerEnv, parts[0]))
	}
	if _, err := load(ctx, sign, signers, 500*time.Millisecond); err != nil {
		return fail(err)
	}
	fmt.Printf("ready %d\n", pluginPID)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		d, err := time.ParseDuration(in.Text())
		if err != nil {
			return fail(err)
		}
		res, err := load(ctx, sign, signers, d)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("done %d\n", res.done)
	}
	return 0
}

// hostSigner launches the plugin binary of the environment as SPIRE does,
// configures it with the plugin_data of the environment and creates a key
// of type t.
func hostSigner(ctx context.Context, t engine.KeyType) (*pluginhost.Plugin, signFunc, error) {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	p, err := pluginhost.Start(sctx, pluginhost.Options{Path: os.Getenv(pluginBinaryEnv)})
	if err != nil {
		return nil, nil, err
	}
	if err := p.Configure(sctx, trustDomain, os.Getenv(pluginDataEnv)); err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("configure: %w%s", err, lastLogs(p))
	}
	sign, err := pluginSigner(sctx, p, "x509-CA-"+keySlug(t), t)
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	return p, sign, nil
}

// sdkSigner builds the raw SDK client of cloudName from the environment the
// plugin process gets, and creates a key of type t with it.
func sdkSigner(ctx context.Context, cloudName string, t engine.KeyType) (sigFunc, error) {
	var c cloud
	switch cloudName {
	case "azure":
		cred, err := azidentity.NewClientSecretCredential(os.Getenv("AZURE_TENANT_ID"), os.Getenv("AZURE_CLIENT_ID"), os.Getenv("AZURE_CLIENT_SECRET"),
			&azidentity.ClientSecretCredentialOptions{
				ClientOptions:            azcore.ClientOptions{Cloud: azcloud.Configuration{ActiveDirectoryAuthorityHost: os.Getenv("AZURE_AUTHORITY_HOST")}},
				DisableInstanceDiscovery: true,
			})
		if err != nil {
			return nil, err
		}
		client, err := azkeys.NewClient(os.Getenv("AZURE_KEYVAULT_URL"), cred, &azkeys.ClientOptions{DisableChallengeResourceVerification: true})
		if err != nil {
			return nil, err
		}
		c = &azureCloud{client: client}
	case "gcp":
		client, err := kms.NewKeyManagementClient(ctx, option.WithEndpoint(os.Getenv("KMSKEEPER_GCPKMS_ENDPOINT")),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())), option.WithoutAuthentication())
		if err != nil {
			return nil, err
		}
		c = &gcpCloud{client: client}
	default:
		return nil, errUnknownBackend(cloudName)
	}
	return c.sdkKey(ctx, t)
}

// verifyCPU is the CPU one verification of a signature made by a key of
// type t costs in this process, repeated for about d between the runs,
// when the emulator is idle.
func verifyCPU(t engine.KeyType, d time.Duration) (time.Duration, error) {
	verify, err := localVerifier(t)
	if err != nil {
		return 0, err
	}
	c0, err := selfCPU()
	if err != nil {
		return 0, err
	}
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		if !verify() {
			return 0, errors.New("verification cost: the signature does not verify")
		}
	}
	c1, err := selfCPU()
	return (c1 - c0) / time.Duration(max(n, 1)), err
}

// localVerifier returns a function that does the verification the engine
// does for every signature of a key of type t (engine.Verify, on a parsed
// key), here over a signature made locally, which costs the same.
func localVerifier(t engine.KeyType) (func() bool, error) {
	digest := sha256.Sum256([]byte("measurement 8"))
	var (
		key crypto.Signer
		err error
	)
	switch t {
	case engine.ECP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case engine.RSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("verification cost: unsupported key type %v", t)
	}
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	pub := key.Public()
	return func() bool { return engine.Verify(pub, digest[:], sig, crypto.SHA256) == nil }, nil
}
