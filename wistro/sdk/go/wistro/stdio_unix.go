//go:build unix

package wistro

import (
	"os"
	"syscall"
)

// pollable returns f with its descriptor switched to non-blocking mode, so reads and writes go
// through Go's network poller: a goroutine waiting for a frame then parks without holding a
// thread in a blocking syscall, and the goroutines it wakes run at once (with a blocking read
// they could wait for the scheduler to retake the processor from the syscall).
func pollable(f *os.File) *os.File {
	fd := int(f.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		return f
	}
	if nf := os.NewFile(uintptr(fd), f.Name()); nf != nil {
		return nf
	}
	return f
}
