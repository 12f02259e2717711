package runpod

import (
	"regexp"
	"slices"
)

// KnownGPUTypes are RunPod's GPU type ids (the GPUTypeId enum of RunPod's
// REST API and the public GPU types table). Pool candidates are checked
// against this list at start-up; the live catalog is authoritative when it
// is reachable.
var KnownGPUTypes = []string{
	"AMD Instinct MI300X OAM",
	"NVIDIA A100 80GB PCIe",
	"NVIDIA A100-SXM4-80GB",
	"NVIDIA A30",
	"NVIDIA A40",
	"NVIDIA B200",
	"NVIDIA GeForce RTX 3070",
	"NVIDIA GeForce RTX 3080",
	"NVIDIA GeForce RTX 3080 Ti",
	"NVIDIA GeForce RTX 3090",
	"NVIDIA GeForce RTX 3090 Ti",
	"NVIDIA GeForce RTX 4070 Ti",
	"NVIDIA GeForce RTX 4080",
	"NVIDIA GeForce RTX 4080 SUPER",
	"NVIDIA GeForce RTX 4090",
	"NVIDIA GeForce RTX 5080",
	"NVIDIA GeForce RTX 5090",
	"NVIDIA H100 80GB HBM3",
	"NVIDIA H100 NVL",
	"NVIDIA H100 PCIe",
	"NVIDIA H200",
	"NVIDIA H200 NVL",
	"NVIDIA L4",
	"NVIDIA L40",
	"NVIDIA L40S",
	"NVIDIA RTX 2000 Ada Generation",
	"NVIDIA RTX 4000 Ada Generation",
	"NVIDIA RTX 4000 SFF Ada Generation",
	"NVIDIA RTX 5000 Ada Generation",
	"NVIDIA RTX 6000 Ada Generation",
	"NVIDIA RTX A2000",
	"NVIDIA RTX A4000",
	"NVIDIA RTX A4500",
	"NVIDIA RTX A5000",
	"NVIDIA RTX A6000",
	"NVIDIA RTX PRO 6000 Blackwell Server Edition",
	"NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
	"Tesla V100-FHHL-16GB",
	"Tesla V100-PCIE-16GB",
	"Tesla V100-SXM2-16GB",
	"Tesla V100-SXM2-32GB",
}

// KnownGPUType reports whether id is one of KnownGPUTypes.
func KnownGPUType(id string) bool { return slices.Contains(KnownGPUTypes, id) }

// dataCenterRE matches RunPod data center ids such as US-TX-3 or EU-RO-1.
var dataCenterRE = regexp.MustCompile(`^[A-Z]{2}-[A-Z]{2,4}-[0-9]{1,2}$`)

// ValidDataCenterID reports whether id looks like a RunPod data center id
// (two-letter area, location code, number: "US-TX-3", "EU-RO-1").
func ValidDataCenterID(id string) bool { return dataCenterRE.MatchString(id) }

// Clouds are the v2 cloud tiers.
var Clouds = []string{"SECURE", "COMMUNITY"}
