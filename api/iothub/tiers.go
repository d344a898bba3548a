package iothub

import (
	"fmt"
	"math"
	"strings"
)

// A Tier is an IoT Hub pricing tier: Free, Basic or Standard, with a
// number of units. The tier sets the operation throttles and the daily
// message quota below, as documented in "IoT Hub quotas and throttling"
// (learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling)
// and on the pricing page; basic tiers have no cloud-to-device messages,
// twins, methods, jobs or configurations ("Choose the right IoT Hub tier").
type Tier string

// The tiers.
const (
	TierF1 Tier = "F1"
	TierB1 Tier = "B1"
	TierB2 Tier = "B2"
	TierB3 Tier = "B3"
	TierS1 Tier = "S1"
	TierS2 Tier = "S2"
	TierS3 Tier = "S3"
)

// Tiers lists the tiers.
var Tiers = []Tier{TierF1, TierB1, TierB2, TierB3, TierS1, TierS2, TierS3}

// ParseTier reads a tier's name, in any case.
func ParseTier(s string) (Tier, error) {
	for _, t := range Tiers {
		if strings.EqualFold(string(t), s) {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown tier %q (want F1, B1, B2, B3, S1, S2 or S3)", s)
}

// Basic reports whether the tier is a basic one.
func (t Tier) Basic() bool { return t == TierB1 || t == TierB2 || t == TierB3 }

// Operation is a throttled kind of operation.
type Operation string

// The throttled operations, one per row of Azure's throttle table.
const (
	OpRegistry       Operation = "registry"       // identity registry: create, get, list, update, delete
	OpConnect        Operation = "connect"        // new device connections
	OpD2C            Operation = "d2c"            // device-to-cloud sends
	OpC2DSend        Operation = "c2dSend"        // cloud-to-device sends
	OpC2DReceive     Operation = "c2dReceive"     // cloud-to-device receives over HTTPS
	OpFileUpload     Operation = "fileUpload"     // file upload initiations
	OpMethod         Operation = "method"         // direct methods, metered in 4 KB
	OpQuery          Operation = "query"          // queries
	OpTwinRead       Operation = "twinRead"       // device and module twin reads
	OpTwinUpdate     Operation = "twinUpdate"     // device and module twin updates
	OpJobs           Operation = "jobs"           // jobs: create, get, list, cancel
	OpJobDevice      Operation = "jobDevice"      // a job's operations on its devices: twin updates, method calls
	OpConfigurations Operation = "configurations" // configurations and deployments
)

// Operations lists the throttled operations.
var Operations = []Operation{OpRegistry, OpConnect, OpD2C, OpC2DSend, OpC2DReceive, OpFileUpload, OpMethod,
	OpQuery, OpTwinRead, OpTwinUpdate, OpJobs, OpJobDevice, OpConfigurations}

// ParseOperation reads an operation's name, in any case.
func ParseOperation(s string) (Operation, error) {
	for _, op := range Operations {
		if strings.EqualFold(string(op), s) {
			return op, nil
		}
	}
	return "", fmt.Errorf("unknown operation %q", s)
}

// Available reports whether the tier has the operation: basic tiers have
// no cloud-to-device messages, methods, twins, jobs or configurations.
func (t Tier) Available(op Operation) bool {
	if !t.Basic() {
		return true
	}
	switch op {
	case OpC2DSend, OpC2DReceive, OpMethod, OpTwinRead, OpTwinUpdate, OpJobs, OpJobDevice, OpConfigurations:
		return false
	}
	return true
}

// throttle is one row of the table: per second for Free/B1/S1, B2/S2 and
// B3/S3; perUnit multiplies by the units, floor is the "higher of" minimum.
type throttle struct {
	rate    [3]float64
	perUnit [3]bool
	floor   [3]float64
}

var throttles = map[Operation]throttle{
	OpRegistry:       {rate: [3]float64{100.0 / 60, 100.0 / 60, 5000.0 / 60}, perUnit: [3]bool{true, true, true}},
	OpConnect:        {rate: [3]float64{12, 120, 6000}, perUnit: [3]bool{true, true, true}, floor: [3]float64{100, 0, 0}},
	OpD2C:            {rate: [3]float64{12, 120, 6000}, perUnit: [3]bool{true, true, true}, floor: [3]float64{100, 0, 0}},
	OpC2DSend:        {rate: [3]float64{100.0 / 60, 100.0 / 60, 5000.0 / 60}, perUnit: [3]bool{true, true, true}},
	OpC2DReceive:     {rate: [3]float64{1000.0 / 60, 1000.0 / 60, 50000.0 / 60}, perUnit: [3]bool{true, true, true}},
	OpFileUpload:     {rate: [3]float64{100.0 / 60, 100.0 / 60, 5000.0 / 60}, perUnit: [3]bool{true, true, true}},
	OpMethod:         {rate: [3]float64{40, 120, 6000}, perUnit: [3]bool{true, true, true}}, // 160 KB, 480 KB, 24 MB per second in 4 KB meters
	OpQuery:          {rate: [3]float64{20.0 / 60, 20.0 / 60, 1000.0 / 60}, perUnit: [3]bool{true, true, true}},
	OpTwinRead:       {rate: [3]float64{100, 10, 500}, perUnit: [3]bool{false, true, true}, floor: [3]float64{0, 100, 0}},
	OpTwinUpdate:     {rate: [3]float64{50, 5, 250}, perUnit: [3]bool{false, true, true}, floor: [3]float64{0, 50, 0}},
	OpJobs:           {rate: [3]float64{100.0 / 60, 100.0 / 60, 5000.0 / 60}, perUnit: [3]bool{true, true, true}},
	OpJobDevice:      {rate: [3]float64{10, 1, 50}, perUnit: [3]bool{false, true, true}, floor: [3]float64{0, 10, 0}},
	OpConfigurations: {rate: [3]float64{20.0 / 60, 20.0 / 60, 20.0 / 60}, perUnit: [3]bool{true, true, true}},
}

// column is the table's column of the tier.
func (t Tier) column() int {
	switch t {
	case TierB2, TierS2:
		return 1
	case TierB3, TierS3:
		return 2
	}
	return 0
}

// Rate is how many operations (for methods, 4 KB meters) per second the
// tier allows with units. The free tier has one unit.
func (t Tier) Rate(op Operation, units int) float64 {
	if t == TierF1 || units < 1 {
		units = 1
	}
	th, ok := throttles[op]
	if !ok {
		return math.Inf(1)
	}
	c := t.column()
	r := th.rate[c]
	if th.perUnit[c] {
		r *= float64(units)
	}
	return math.Max(r, th.floor[c])
}

// DailyMessages is the tier's daily quota of messages, counted in meters
// of MeterBytes: 8,000 for the free tier, and per unit 400,000 (B1, S1),
// 6,000,000 (B2, S2) or 300,000,000 (B3, S3).
func (t Tier) DailyMessages(units int) int64 {
	if t == TierF1 {
		return 8000
	}
	if units < 1 {
		units = 1
	}
	per := [3]int64{400_000, 6_000_000, 300_000_000}[t.column()]
	return per * int64(units)
}

// MeterBytes is the message size the daily quota counts in: 0.5 KB on the
// free tier, 4 KB on the others.
func (t Tier) MeterBytes() int {
	if t == TierF1 {
		return 512
	}
	return 4096
}

// Meters is how many meters of size meter a payload of n bytes counts
// for: at least one.
func Meters(n, meter int) int {
	if n <= meter {
		return 1
	}
	return (n + meter - 1) / meter
}

// MethodMeter is the throttling meter of direct methods, 4 KB.
const MethodMeter = 4096
