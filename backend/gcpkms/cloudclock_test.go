package gcpkms

import (
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestOpenedBackendStampsFollowTheCloudClock opens the backend the way the plugin does
// (Config.Open, local clock) against an emulator whose clock runs a day
// ahead, and checks that the liveness stamp it writes is the cloud's time:
// not the local time (other servers would take the key for a day old) and
// not the cloud's lead counted twice (the key would look fresh for a day too
// long, and the engine would never find it due).
func TestOpenedBackendStampsFollowTheCloudClock(t *testing.T) {
	for _, lead := range []time.Duration{0, 25 * time.Hour, 30 * 24 * time.Hour} {
		t.Run(lead.String(), func(t *testing.T) {
			srv, _ := startEmulator(t, cloudkms.Options{Principals: map[string][]string{pluginAccount: ringPermissions, "admin@kmskeeper-test.iam.gserviceaccount.com": {"*"}}})
			b := openWithServiceAccount(t, srv, "")
			srv.Clock().Advance(lead)
			// The first answer's Date header shows the backend the cloud's
			// time: the creation's stamp already carries it.
			g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			created := getKey(t, adminClient(t, srv), testRing+"/cryptoKeys/spire-key-server-a-x509-CA-A").GetLabels()[labelLastUpdate]
			if stamp, _ := parseUnixLabel(created); stamp.Sub(srv.Clock().Now()) < -time.Minute {
				t.Errorf("spire-last-update at creation = %v, behind the cloud's %v", stamp, srv.Clock().Now())
			}
			if _, err := b.KeepAlive(callCtx(t), g); err != nil {
				t.Fatalf("KeepAlive: %v", err)
			}
			label := getKey(t, adminClient(t, srv), testRing+"/cryptoKeys/spire-key-server-a-x509-CA-A").GetLabels()[labelLastUpdate]
			stamp, ok := parseUnixLabel(label)
			if !ok {
				t.Fatalf("spire-last-update = %q", label)
			}
			if d := stamp.Sub(srv.Clock().Now()); d < -time.Minute || d > time.Minute {
				t.Errorf("spire-last-update is %v from the cloud's time (lead %v)", d.Round(time.Second), lead)
			}
		})
	}
}

// TestCloudClock checks the estimate of the cloud's time on a host clock
// that is off: once the cloud has reported a time, the estimate is that
// report moved on by the time elapsed on the host, whatever the host's
// clock reads; before any report it is the host's clock (nothing has been
// listed yet to judge). A report older than the estimate (a key created
// long ago) changes nothing; a newer one raises it.
func TestCloudClock(t *testing.T) {
	cloud := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	type report struct {
		wait time.Duration // host time elapsed before the report
		seen time.Duration // the reported cloud time, from cloud
		zero bool          // the report is the zero time instead
	}
	tests := []struct {
		name    string
		host    time.Duration // host clock minus cloud clock
		reports []report
		then    time.Duration // host time elapsed after the reports
		want    time.Duration // the estimate, from cloud
		known   bool
	}{
		{name: "host 15 days ahead", host: 15 * 24 * time.Hour, reports: []report{{}}, then: 10 * time.Minute, want: 10 * time.Minute, known: true},
		{name: "host 3 days behind", host: -72 * time.Hour, reports: []report{{}}, then: 10 * time.Minute, want: 10 * time.Minute, known: true},
		{name: "no report: the host clock", host: 15 * 24 * time.Hour, then: 10 * time.Minute, want: 15*24*time.Hour + 10*time.Minute},
		{name: "an older report changes nothing", reports: []report{{}, {wait: 10 * time.Minute, seen: time.Minute}}, then: time.Minute, want: 11 * time.Minute, known: true},
		{name: "a newer report raises it", host: time.Hour, reports: []report{{}, {wait: 10 * time.Minute, seen: 20 * time.Minute}}, then: 5 * time.Minute, want: 25 * time.Minute, known: true},
		{name: "a zero report is none", host: -time.Hour, reports: []report{{zero: true}}, then: time.Minute, want: -time.Hour + time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := cloud.Add(tt.host)
			c := newCloudClock(func() time.Time { return local })
			for _, r := range tt.reports {
				local = local.Add(r.wait)
				seen := cloud.Add(r.seen)
				if r.zero {
					seen = time.Time{}
				}
				c.Observe(seen)
			}
			local = local.Add(tt.then)
			if got, want := c.Now(), cloud.Add(tt.want); !got.Equal(want) {
				t.Errorf("Now() = %v, want %v", got, want)
			}
			got, known := c.Estimate()
			if known != tt.known || (known && !got.Equal(cloud.Add(tt.want))) {
				t.Errorf("estimate() = %v, %v; want %v, %v", got, known, cloud.Add(tt.want), tt.known)
			}
		})
	}
}

// TestDateHeader parses the Date response header in the formats HTTP
// allows, and ignores a missing or malformed one.
func TestDateHeader(t *testing.T) {
	want := time.Date(2027, 3, 1, 12, 0, 5, 0, time.UTC)
	tests := []struct {
		name string
		md   metadata.MD
		ok   bool
	}{
		{"IMF-fixdate", metadata.Pairs("date", "Mon, 01 Mar 2027 12:00:05 GMT"), true},
		{"RFC 850", metadata.Pairs("date", "Monday, 01-Mar-27 12:00:05 GMT"), true},
		{"ANSI C", metadata.Pairs("date", "Mon Mar  1 12:00:05 2027"), true},
		{"none", metadata.MD{}, false},
		{"malformed", metadata.Pairs("date", "yesterday"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := dateHeader(tt.md)
			if ok != tt.ok || (ok && !got.Equal(want)) {
				t.Errorf("dateHeader = %v, %v; want %v, %v", got, ok, want, tt.ok)
			}
		})
	}
}

// TestCloudTimeFollowsDateHeader moves the emulator's clock two days ahead
// of the host's and makes one call whose answer carries no creation time:
// its Date header alone moves CloudTime, and the stamps, to the emulator's
// time. Before any answer, CloudTime is zero.
func TestCloudTimeFollowsDateHeader(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a", func(o *Options) { o.Now = time.Now })
	if got := b.CloudTime(); !got.IsZero() {
		t.Fatalf("CloudTime() before any answer = %v, want zero", got)
	}
	srv.Clock().Advance(48 * time.Hour)
	before := srv.Clock().Now()
	if _, err := b.ListGenerations(callCtx(t)); err != nil {
		t.Fatalf("ListGenerations: %v", err)
	}
	after := srv.Clock().Now()
	got := b.CloudTime()
	// The header is to the second, and a lower bound.
	if got.Before(before.Truncate(time.Second)) || got.After(after) {
		t.Errorf("CloudTime() = %v, want the emulator's time (between %v and %v)", got, before.Truncate(time.Second), after)
	}
	if stamp := b.clock.Now(); stamp.Sub(after) > time.Second || after.Sub(stamp) > time.Minute {
		t.Errorf("the stamps' clock reads %v, want the emulator's %v", stamp, after)
	}
}

// TestStampsFollowTheCloudClock runs servers whose host clock is off from
// Cloud KMS's (three days behind, fifteen days ahead): once the service has
// answered, liveness stamps and CloudTime carry the cloud's time, so other
// servers (judging by the cloud's clock) do not see the keys as older than
// they are, and the engine does not judge ages with the host's error.
func TestStampsFollowTheCloudClock(t *testing.T) {
	tests := []struct {
		name       string
		cloudAhead time.Duration
		hostOffset time.Duration
	}{
		{"host 3 days behind", 72 * time.Hour, 0},
		{"host 15 days ahead", 0, 15 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, raw := startEmulator(t, cloudkms.Options{})
			srv.Clock().Advance(tt.cloudAhead)
			b := newBackend(t, srv, "server-a", func(o *Options) {
				o.Now = func() time.Time { return time.Now().Add(tt.hostOffset) }
			})
			g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
			if err != nil {
				t.Fatal(err)
			}
			key := testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A"
			for _, step := range []string{"creation", "keep-alive"} {
				if step == "keep-alive" {
					if g, err = b.KeepAlive(callCtx(t), g); err != nil {
						t.Fatal(err)
					}
				}
				stamp, _ := parseUnixLabel(getKey(t, raw, key).GetLabels()[labelLastUpdate])
				if d := srv.Clock().Now().Sub(stamp); d < -time.Minute || d > time.Minute {
					t.Errorf("%s: spire-last-update is %v behind the cloud's clock, want about 0", step, d)
				}
				if d := srv.Clock().Now().Sub(g.Updated); d < -time.Minute || d > time.Minute {
					t.Errorf("%s: Updated is %v behind the cloud's clock, want about 0", step, d)
				}
			}
			if d := srv.Clock().Now().Sub(b.CloudTime()); d < 0 || d > time.Minute {
				t.Errorf("CloudTime() is %v behind the cloud's clock, want a lower bound close to it", d)
			}
		})
	}
}
