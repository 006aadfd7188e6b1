module wistro.dev/sdk

go 1.21
