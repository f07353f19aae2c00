package main

import (
	"net/url"
	"strings"
)

// cloud holds what differs between Microsoft Entra's clouds beyond the
// authority host: the v1 token issuer, the Microsoft Graph host, and the
// audience of the workload identity token exchange. Tokens, app
// registrations and Graph data never cross clouds.
type cloud struct {
	name        string
	v1Issuer    string // iss of v1 access tokens, with {tenantid} for the tenant
	graphHost   string // Microsoft Graph's service root, without /v1.0
	exchangeAud string // audience of a token used as a federated client assertion
}

// clouds are Entra's clouds by the authority hosts that lead to them. Sources
// (Microsoft Learn):
//   - authority hosts: "National clouds" (entra/identity-platform/authentication-national-cloud)
//     and MSAL's authority aliases (login.chinacloudapi.cn = login.partner.microsoftonline.cn);
//   - v1 issuers: sts.windows.net serves the public and US Government clouds,
//     sts.chinacloudapi.cn Azure China (Microsoft Q&A 1190472 "What are the token
//     issuers for the sovereign cloud", and Azure China's sample tokens);
//   - Graph hosts: "Microsoft Graph national cloud deployments" (graph/deployments):
//     graph.microsoft.us is GCC High (L4); DoD (L5) uses dod-graph.microsoft.us,
//     to be set in GRAPH_BASE_URL and GRAPH_SCOPE;
//   - exchange audiences: "Configure an application to trust a managed identity"
//     (entra/workload-id/workload-identity-federation-config-app-trust-managed-identity).
//
// Microsoft Entra External ID ({subdomain}.ciamlogin.com) runs in the public
// cloud; so does any host not listed (the -dev and test providers).
var clouds = []struct {
	hosts []string
	cloud
}{
	{[]string{"login.microsoftonline.us", "login.usgovcloudapi.net"},
		cloud{"US Government", v1IssuerTemplate, "https://graph.microsoft.us", "api://AzureADTokenExchangeUSGov"}},
	{[]string{"login.partner.microsoftonline.cn", "login.chinacloudapi.cn"},
		cloud{"Azure China (21Vianet)", "https://sts.chinacloudapi.cn/{tenantid}/", "https://microsoftgraph.chinacloudapi.cn", "api://AzureADTokenExchangeChina"}},
}

// publicCloud is the global Azure cloud (login.microsoftonline.com).
var publicCloud = cloud{"public", v1IssuerTemplate, "https://graph.microsoft.com", defaultExchangeAud}

// cloudFor returns the cloud of an authority host URL such as
// "https://login.microsoftonline.us": matched by host name, without regard
// to case; the public cloud for any other host.
func cloudFor(authorityHost string) cloud {
	u, err := url.Parse(authorityHost)
	if err != nil {
		return publicCloud
	}
	for _, c := range clouds {
		for _, h := range c.hosts {
			if strings.EqualFold(u.Hostname(), h) {
				return c.cloud
			}
		}
	}
	return publicCloud
}
