// Package mathx is a tiny module vendored into the example, so that the
// example has a dependency that builds without a module proxy.
package mathx

// Sum returns the sum of its arguments (0 for none).
func Sum(xs ...int) int {
	total := 0
	for _, x := range xs {
		total += x
	}
	return total
}

// Product returns the product of its arguments (1 for none).
func Product(xs ...int) int {
	total := 1
	for _, x := range xs {
		total *= x
	}
	return total
}
