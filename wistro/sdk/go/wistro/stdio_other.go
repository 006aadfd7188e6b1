//go:build !unix

package wistro

import "os"

func pollable(f *os.File) *os.File { return f }
