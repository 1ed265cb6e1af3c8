module example.com/slipway/goapp

go 1.19
