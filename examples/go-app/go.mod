module example.com/slipway/goapp

go 1.19

require example.com/slipway/mathx v0.1.0
