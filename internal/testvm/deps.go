package testvm

import (
	"errors"
	"fmt"
)

// ErrMissing marks a host dependency the test guest cannot do without:
// QEMU, qemu-img, a static busybox or a kernel with its modules. Tests
// fail on it rather than skip: a suite that silently skips its live-VM
// half looks green and proves nothing.
var ErrMissing = errors.New("missing test dependency")

// installHint tells a developer how to get the dependencies.
const installHint = "run make test, which installs qemu-system-x86 busybox-static linux-image-amd64"

// missingf formats an ErrMissing error with the install hint; format may
// use %w.
func missingf(format string, args ...any) error {
	return fmt.Errorf("%w: %w (%s)", ErrMissing, fmt.Errorf(format, args...), installHint)
}
