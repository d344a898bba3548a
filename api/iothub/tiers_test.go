package iothub

import "testing"

// Ensure that the throttles read as Azure's table says, "higher of"
// minimums and per-unit scaling included, and that basic tiers lack the
// standard-only features.
func TestTierRates(t *testing.T) {
	tests := []struct {
		tier  Tier
		units int
		op    Operation
		want  float64
	}{
		{TierS1, 1, OpTwinUpdate, 50},
		{TierS1, 9, OpTwinUpdate, 50},
		{TierS2, 20, OpTwinUpdate, 100},
		{TierS2, 1, OpTwinUpdate, 50},
		{TierS3, 2, OpTwinUpdate, 500},
		{TierS1, 1, OpD2C, 100},
		{TierS1, 9, OpD2C, 108},
		{TierS2, 2, OpConnect, 240},
		{TierF1, 5, OpRegistry, 100.0 / 60},
		{TierS1, 3, OpQuery, 1},
		{TierS3, 1, OpMethod, 6000},
		{TierB1, 1, OpMethod, 40},
		{TierS1, 4, OpJobDevice, 10},
		{TierS2, 4, OpJobDevice, 10},
		{TierS2, 30, OpJobDevice, 30},
		{TierS3, 2, OpJobDevice, 100},
	}
	for _, tt := range tests {
		if got := tt.tier.Rate(tt.op, tt.units); got-tt.want > 1e-9 || tt.want-got > 1e-9 {
			t.Errorf("%s×%d %s = %v, want %v", tt.tier, tt.units, tt.op, got, tt.want)
		}
	}
	if TierB2.Available(OpTwinRead) || TierB1.Available(OpMethod) || TierB3.Available(OpC2DSend) || TierB1.Available(OpJobDevice) || !TierB1.Available(OpD2C) || !TierS1.Available(OpMethod) {
		t.Error("basic-tier availability")
	}
	if TierF1.DailyMessages(3) != 8000 || TierS2.DailyMessages(2) != 12_000_000 || TierF1.MeterBytes() != 512 || TierS1.MeterBytes() != 4096 {
		t.Error("daily quota")
	}
	if Meters(0, 4096) != 1 || Meters(4096, 4096) != 1 || Meters(4097, 4096) != 2 {
		t.Error("meters")
	}
	if _, err := ParseTier("s2"); err != nil {
		t.Error(err)
	}
	if _, err := ParseTier("S4"); err == nil {
		t.Error("S4 accepted")
	}
}
