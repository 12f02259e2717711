package config

import (
	"errors"
	"strings"
	"testing"
)

const runpodPool = `
public_url: https://drover.example.com
pools:
  gpu:
    provider: runpod
    image: ghcr.io/acme/worker:1
    exec: python3 /app/handler.py
    runpod:
      disk: "40"
      network_volume: vol_1
      mount_path: /data
    candidates:
      - {gpu: "NVIDIA GeForce RTX 4090", regions: [US-TX-3, EU-RO-1]}
      - {gpu: "NVIDIA L40S", cloud: COMMUNITY}
`

func envWithKey(k string) string {
	if k == EnvRunPodAPIKey {
		return "rp_key"
	}
	return ""
}

func TestRunPodPoolLoads(t *testing.T) {
	cfg, err := Load(writeFile(t, "rp.yaml", runpodPool), envWithKey)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools["gpu"]
	if p.RunPod.DiskGB() != 40 || p.RunPod.NetworkVolume != "vol_1" || !p.GPURequired() {
		t.Errorf("pool %+v %+v", p, p.RunPod)
	}
	if w := cfg.Warnings(); len(w) != 0 {
		t.Errorf("warnings for an https public_url: %v", w)
	}
}

func TestRunPodBadInputOneLineEach(t *testing.T) {
	bad := strings.NewReplacer(
		"image: ghcr.io/acme/worker:1", `image: ""`,
		`disk: "40"`, `disk: "40GB"`,
		`"NVIDIA GeForce RTX 4090"`, `"RTX 4090"`,
		"EU-RO-1]", "eu-west]",
	).Replace(runpodPool)
	_, err := Load(writeFile(t, "bad.yaml", bad), noEnv)
	ve, ok := errors.AsType[*ValidationError](err)
	if !ok {
		t.Fatalf("Load: %v, want a validation error", err)
	}
	want := []string{
		`pools.gpu.image: a runpod pool needs an image`,
		`pools.gpu.runpod.disk: must be a whole number of GB such as 50 (got "40GB")`,
		`pools.gpu.candidates[0].gpu: unknown RunPod GPU type id "RTX 4090"`,
		`pools.gpu.candidates[0].regions[1]: not a RunPod data center id such as US-TX-3 or EU-RO-1 (got "eu-west")`,
		`providers.runpod: a pool uses runpod but there is no API key`,
	}
	if len(ve.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(ve.Problems), len(want), ve.Error())
	}
	for _, w := range want {
		found := false
		for _, p := range ve.Problems {
			if strings.HasPrefix(p, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing problem %q in:\n%s", w, ve.Error())
		}
	}
}

func TestRunPodTemplateInsteadOfImage(t *testing.T) {
	y := strings.Replace(runpodPool, "image: ghcr.io/acme/worker:1", "runpod_unused: x", 1)
	y = strings.Replace(y, "    runpod_unused: x\n", "", 1)
	y = strings.Replace(y, `      disk: "40"`, `      template: tpl_1`+"\n"+`      disk: "40"`, 1)
	if _, err := Load(writeFile(t, "tpl.yaml", y), envWithKey); err != nil {
		t.Fatalf("a template without an image: %v", err)
	}
}

func TestClusterName(t *testing.T) {
	a := &Config{Database: "postgres://drover:s3cret@db.internal:5432/drover"}
	b := &Config{Database: "postgres://drover:other@db.internal:5432/drover"}
	c := &Config{Database: "sqlite:///var/lib/drover/drover.db"}
	if a.ClusterName() != b.ClusterName() {
		t.Error("the cluster name depends on the database password")
	}
	if a.ClusterName() == c.ClusterName() || !clusterRE.MatchString(a.ClusterName()) || strings.Contains(a.ClusterName(), "s3cret") {
		t.Errorf("cluster names %q %q", a.ClusterName(), c.ClusterName())
	}
	if (&Config{Cluster: "prod-eu"}).ClusterName() != "prod-eu" {
		t.Error("explicit cluster ignored")
	}
	_, err := Load(writeFile(t, "cl.yaml", "cluster: Prod_EU\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "cluster: must be a DNS label") {
		t.Errorf("bad cluster: %v", err)
	}
}

func TestPlainHTTPPublicURLWarns(t *testing.T) {
	for url, want := range map[string]string{
		"http://drover.example.com:8080": "plain http to a non-loopback host",
		"http://127.0.0.1:8080":          "loopback address",
		"https://drover.example.com":     "",
	} {
		y := strings.Replace(runpodPool, "https://drover.example.com", url, 1)
		cfg, err := Load(writeFile(t, "w.yaml", y), envWithKey)
		if err != nil {
			t.Fatal(err)
		}
		w := strings.Join(cfg.Warnings(), "\n")
		if (want == "") != (w == "") || !strings.Contains(w, want) {
			t.Errorf("%s: warnings %q, want %q", url, w, want)
		}
	}
	if w := Default().Warnings(); len(w) != 0 {
		t.Errorf("local default warns: %v", w)
	}
}

func TestTLSNeedsBothFiles(t *testing.T) {
	_, err := Load(writeFile(t, "t.yaml", "tls:\n  cert_file: /x.pem\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "tls: needs both cert_file and key_file") {
		t.Errorf("half TLS: %v", err)
	}
	_, err = Load(writeFile(t, "t2.yaml", "tls:\n  cert_file: /nonexistent/c.pem\n  key_file: /nonexistent/k.pem\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "tls.cert_file: cannot read") {
		t.Errorf("missing TLS files: %v", err)
	}
}
