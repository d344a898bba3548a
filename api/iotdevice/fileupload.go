package iotdevice

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// UploadFile uploads size bytes of body as the blob name through the
// hub's file upload (next-wave-protocols §4), as the SDKs' uploadToBlob
// does: it asks the hub for a SAS URI over HTTPS, writes the blob to the
// storage account with one Put Blob, and reports the outcome, a failed
// write too. It returns the blob's name, {deviceId}/{name}.
func (c *Client) UploadFile(ctx context.Context, name string, body io.Reader, size int64) (string, error) {
	hc, err := c.httpsClient()
	if err != nil {
		return "", err
	}
	var sas iothub.FileUploadSAS
	if err := c.hubRequest(ctx, hc, "/files", iothub.FileUploadRequest{BlobName: name}, &sas); err != nil {
		return "", fmt.Errorf("iotdevice: file upload SAS: %w", err)
	}
	blobURL := "https://" + sas.HostName + "/" + sas.ContainerName + "/" + (&url.URL{Path: sas.BlobName}).EscapedPath() + sas.SASToken
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, blobURL, body)
	if err != nil {
		return "", err
	}
	req.ContentLength = size
	req.Header.Set("x-ms-blob-type", "BlockBlob")
	req.Header.Set("x-ms-version", "2021-08-06")
	status := iothub.FileUploadStatus{CorrelationID: sas.CorrelationID, IsSuccess: true, StatusCode: http.StatusCreated}
	res, upErr := hc.Do(req)
	if upErr == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			upErr = fmt.Errorf("the storage account answered %s", res.Status)
		}
		status.StatusCode = res.StatusCode
	}
	if upErr != nil {
		status.IsSuccess, status.StatusDescription = false, upErr.Error()
		if status.StatusCode == http.StatusCreated {
			status.StatusCode = http.StatusInternalServerError
		}
	}
	if err := c.hubRequest(ctx, hc, "/files/notifications", status, nil); err != nil {
		return "", fmt.Errorf("iotdevice: file upload notification: %w", err)
	}
	if upErr != nil {
		return "", fmt.Errorf("iotdevice: upload %s: %w", sas.BlobName, upErr)
	}
	return sas.BlobName, nil
}

// httpsHost is where the hub's HTTPS is: Options.HTTPSHost; else the
// host and its port when the transport is on the HTTPS port; else the
// host on 443.
func (c *Client) httpsHost() string {
	if c.opts.HTTPSHost != "" {
		return c.opts.HTTPSHost
	}
	h, port := c.hostPort()
	if c.opts.Transport.DefaultPort() != "443" {
		port = "443"
	}
	return net.JoinHostPort(h, port)
}

// httpsClient is the client's HTTPS client, made on first use and kept,
// so its connections to the hub and the storage account are reused.
func (c *Client) httpsClient() (*http.Client, error) {
	c.httpOnce.Do(func() { c.hc, c.hcErr = c.newHTTPSClient() })
	return c.hc, c.hcErr
}

// newHTTPSClient trusts the system roots (storage accounts) and the CA
// file (the emulator, and Azurite with its certificate).
func (c *Client) newHTTPSClient() (*http.Client, error) {
	cfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	cfg.ServerName = ""
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if c.opts.CAFile != "" {
		pem, err := os.ReadFile(c.opts.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("iotdevice: the CA file %s holds no PEM certificate", c.opts.CAFile)
		}
	}
	cfg.RootCAs = pool
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, nil
}

// hubRequest POSTs v as JSON to the device's path on the hub's HTTPS and
// decodes the answer into out.
func (c *Client) hubRequest(ctx context.Context, hc *http.Client, path string, v, out any) error {
	body, _ := json.Marshal(v)
	_, b, _, err := c.hubDo(ctx, hc, http.MethodPost, path, [][2]string{{"Content-Type", "application/json; charset=utf-8"}}, body)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// hubDo sends a request to the device's path on the hub's HTTPS,
// authenticated as the device, and returns the answer's body and
// status, body and headers, or the hub's error.
func (c *Client) hubDo(ctx context.Context, hc *http.Client, method, path string, headers [][2]string, body []byte) (int, []byte, http.Header, error) {
	u := "https://" + c.httpsHost() + "/devices/" + url.PathEscape(c.cs.DeviceID) + path + "?api-version=" + APIVersion
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	// The hub's name, as the device's token is scoped to it.
	req.Host = c.cs.HostName
	if h, _, err := net.SplitHostPort(req.Host); err == nil {
		req.Host = h
	}
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	if tok := c.token(); tok != "" {
		req.Header.Set("Authorization", tok)
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode >= 300 {
		return 0, nil, nil, iothub.ParseErrorResponse(res.StatusCode, res.Header, b)
	}
	return res.StatusCode, b, res.Header, nil
}
