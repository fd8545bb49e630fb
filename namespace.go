package rendezvous

import "unicode/utf8"

// MaxNamespaceLength is the longest namespace, in bytes, that the
// specification allows.
const MaxNamespaceLength = 255

// ValidateNamespace checks a namespace to register in: 1 to MaxNamespaceLength
// bytes of valid UTF-8. It returns an *Error with StatusInvalidNamespace.
func ValidateNamespace(ns string) error {
	if ns == "" {
		return Errorf(StatusInvalidNamespace, "namespace is empty")
	}
	return ValidateDiscoverNamespace(ns)
}

// ValidateDiscoverNamespace checks a namespace to discover in. The empty
// namespace is allowed there and means every namespace.
func ValidateDiscoverNamespace(ns string) error {
	if len(ns) > MaxNamespaceLength {
		return Errorf(StatusInvalidNamespace, "namespace is %d bytes, longer than %d", len(ns), MaxNamespaceLength)
	}
	if !utf8.ValidString(ns) {
		return Errorf(StatusInvalidNamespace, "namespace is not valid UTF-8")
	}
	return nil
}
