package goapp

import (
	"testing"

	"example.com/slipway/mathx"
)

func TestAdd(t *testing.T) {
	if Add(2, 3) != 5 {
		t.Fatal("2 + 3 != 5")
	}
	if Add(-4, 4) != mathx.Sum() {
		t.Fatal("-4 + 4 != 0")
	}
}

func TestScale(t *testing.T) {
	if got := Scale(3, 7); got != 21 {
		t.Fatalf("Scale(3, 7) = %d, want 21", got)
	}
}
