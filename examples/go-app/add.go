package goapp

import "example.com/slipway/mathx"

// Add returns the sum of a and b.
func Add(a, b int) int { return mathx.Sum(a, b) }

// Scale returns x multiplied by k.
func Scale(k, x int) int { return mathx.Product(k, x) }
