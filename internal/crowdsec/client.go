package crowdsec

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// ClientOptions say how to reach a LAPI.
type ClientOptions struct {
	URL    string // http(s)://host:port/
	APIKey string // bouncer key, for the decision stream
	// TLS: a CA to trust instead of the system's, a client certificate
	// for mTLS, or no verification at all (test set-ups only).
	CACertPath, CertPath, KeyPath string
	InsecureSkipVerify            bool
	// Timeout bounds one request, the body included: a slow LAPI costs
	// a missed pull, never a stuck bouncer.
	Timeout   time.Duration
	UserAgent string // name/version
}

// Client talks to one LAPI.
type Client struct {
	base  *url.URL
	key   string
	agent string
	http  *http.Client
}

// ErrUnauthorized is a 401 or 403: a wrong key, or an expired token.
var ErrUnauthorized = errors.New("unauthorized")

// NewClient checks the options and builds the TLS set-up.
func NewClient(o ClientOptions) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("lapi url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("lapi url %q: want http(s)://host:port/", o.URL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	tc := &tls.Config{InsecureSkipVerify: o.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // the operator's choice
	if o.CACertPath != "" {
		pem, err := os.ReadFile(o.CACertPath)
		if err != nil {
			return nil, fmt.Errorf("ca_cert_path: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_cert_path %s: no PEM certificate in it", o.CACertPath)
		}
		tc.RootCAs = pool
	}
	if o.CertPath != "" || o.KeyPath != "" {
		cert, err := tls.LoadX509KeyPair(o.CertPath, o.KeyPath)
		if err != nil {
			return nil, fmt.Errorf("cert_path/key_path: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.UserAgent == "" {
		// LAPI 1.4 refuses a watcher login whose User-Agent is not
		// name/version ("bad user agent"), with a plain 401.
		o.UserAgent = "xdpguard/1"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &Client{base: u, key: o.APIKey, agent: o.UserAgent, http: &http.Client{Transport: tr, Timeout: o.Timeout}}, nil
}

// Stream pulls decisions: with startup, the LAPI's whole set; without, what
// changed since this bouncer's last pull (the LAPI remembers it per key,
// so a pull after an outage catches up). Filters also go in the query, so
// a LAPI that understands them sends less.
func (c *Client) Stream(ctx context.Context, startup bool, f Filter) (Delta, error) {
	q := url.Values{}
	q.Set("startup", fmt.Sprint(startup))
	if len(f.Scopes) > 0 {
		q.Set("scopes", strings.Join(f.Scopes, ","))
	}
	if len(f.Origins) > 0 {
		q.Set("origins", strings.Join(f.Origins, ","))
	}
	if len(f.ScenariosContaining) > 0 {
		q.Set("scenarios_containing", strings.Join(f.ScenariosContaining, ","))
	}
	if len(f.ScenariosNotContaining) > 0 {
		q.Set("scenarios_not_containing", strings.Join(f.ScenariosNotContaining, ","))
	}
	req, err := c.request(ctx, http.MethodGet, "v1/decisions/stream?"+q.Encode(), nil)
	if err != nil {
		return Delta{}, err
	}
	req.Header.Set("X-Api-Key", c.key)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return Delta{}, err
	}
	defer resp.Body.Close()
	if err := status(resp, http.StatusOK); err != nil {
		return Delta{}, fmt.Errorf("decisions stream: %w", err)
	}
	d, err := DecodeStream(resp.Body, f, startup)
	d.Pulled = time.Since(start)
	return d, err
}

// Login logs a machine in and returns its JWT and when it expires.
func (c *Client) Login(ctx context.Context, machineID, password string, scenarios []string) (string, time.Time, error) {
	body, _ := json.Marshal(map[string]any{"machine_id": machineID, "password": password, "scenarios": scenarios})
	req, err := c.request(ctx, http.MethodPost, "v1/watchers/login", body)
	if err != nil {
		return "", time.Time{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", time.Time{}, err
	}
	defer resp.Body.Close()
	if err := status(resp, http.StatusOK); err != nil {
		return "", time.Time{}, fmt.Errorf("watcher login: %w", err)
	}
	var out struct {
		Token  string    `json:"token"`
		Expire time.Time `json:"expire"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", time.Time{}, fmt.Errorf("watcher login: %w", err)
	}
	if out.Token == "" {
		return "", time.Time{}, errors.New("watcher login: no token in the answer")
	}
	return out.Token, out.Expire, nil
}

// PostAlerts posts alerts with a machine's token.
func (c *Client) PostAlerts(ctx context.Context, token string, alerts []Alert) error {
	body, err := json.Marshal(alerts)
	if err != nil {
		return err
	}
	req, err := c.request(ctx, http.MethodPost, "v1/alerts", body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := status(resp, http.StatusCreated, http.StatusOK); err != nil {
		return fmt.Errorf("post alerts: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	return nil
}

func (c *Client) request(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	u := c.base.JoinPath() // a copy
	rel, err := url.Parse(path)
	if err != nil {
		return nil, err
	}
	u = u.ResolveReference(rel)
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.agent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// status turns an unexpected HTTP status into an error that carries the
// start of the LAPI's message.
func status(resp *http.Response, want ...int) error {
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	err := fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return err
}
