package pluginhost

import (
	"context"

	configv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/common/config/v1"
	initv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/private/init/v1"
)

// Configure sends plugin_data (hcl) with the trust domain, as SPIRE does at
// startup and again when plugin_data_file is reloaded.
func (p *Plugin) Configure(ctx context.Context, trustDomain, hcl string) error {
	_, err := p.config.Configure(ctx, &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration:  hcl,
	})
	return err
}

// Validate asks the plugin to check plugin_data without applying it. err is
// a transport or protocol failure; a bad configuration is valid=false with
// notes.
func (p *Plugin) Validate(ctx context.Context, trustDomain, hcl string) (valid bool, notes []string, err error) {
	resp, err := p.config.Validate(ctx, &configv1.ValidateRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		HclConfiguration:  hcl,
	})
	if err != nil {
		return false, nil, err
	}
	return resp.GetValid(), resp.GetNotes(), nil
}

// Deinit sends Deinit, as SPIRE does right before unloading the plugin. The
// process keeps running until Close or Kill.
func (p *Plugin) Deinit(ctx context.Context) error {
	_, err := p.init.Deinit(ctx, &initv1.DeinitRequest{})
	return err
}

// InitClient returns the raw client of the plugin's Init service.
func (p *Plugin) InitClient() initv1.InitClient { return p.init }

// ConfigClient returns the raw client of the plugin's Config service.
func (p *Plugin) ConfigClient() configv1.ConfigClient { return p.config }
