package cloudkms

import (
	"fmt"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// services records the projects in which the Cloud KMS API is disabled.
type services struct {
	mu       sync.Mutex
	disabled map[string]bool
}

func newServices(disabled []string) *services {
	s := &services{disabled: map[string]bool{}}
	for _, p := range disabled {
		s.disabled[p] = true
	}
	return s
}

// SetServiceEnabled enables or disables the Cloud KMS API in project. While
// it is disabled, every call on the project's resources is refused as the
// service refuses calls to a project that has not enabled the API.
func (s *Server) SetServiceEnabled(project string, enabled bool) {
	s.services.mu.Lock()
	defer s.services.mu.Unlock()
	if enabled {
		delete(s.services.disabled, project)
	} else {
		s.services.disabled[project] = true
	}
}

// check returns the service's answer for a call on project when the API is
// disabled there: PERMISSION_DENIED with an ErrorInfo of reason
// SERVICE_DISABLED (the consumer, the service and where to enable it) and a
// Help link, as Google's front end sends it.
func (sv *services) check(project string) error {
	sv.mu.Lock()
	off := sv.disabled[project]
	sv.mu.Unlock()
	if !off {
		return nil
	}
	url := "https://console.developers.google.com/apis/api/cloudkms.googleapis.com/overview?project=" + project
	msg := fmt.Sprintf("Cloud Key Management Service (KMS) API has not been used in project %s before or it is disabled. Enable it by visiting %s then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry.", project, url)
	st := status.New(codes.PermissionDenied, msg)
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: "SERVICE_DISABLED", Domain: "googleapis.com", Metadata: map[string]string{
			"consumer": "projects/" + project, "service": "cloudkms.googleapis.com",
			"serviceTitle": "Cloud Key Management Service (KMS) API", "containerInfo": project, "activationUrl": url,
		}},
		&errdetails.Help{Links: []*errdetails.Help_Link{{Description: "Google developers console API activation", Url: url}}},
	); err == nil {
		st = d
	}
	return st.Err()
}
