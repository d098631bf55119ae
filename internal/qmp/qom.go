package qmp

import (
	"context"
	"strings"
)

// ObjectProperty is one property of a QOM object (QAPI ObjectPropertyInfo).
type ObjectProperty struct {
	Name string `json:"name"`
	// Type is the property's type; children read "child<TYPE>" and links
	// "link<TYPE>".
	Type string `json:"type"`
}

// ChildType returns the object type of a child<TYPE> property, or "".
func (p ObjectProperty) ChildType() string {
	t, ok := strings.CutPrefix(p.Type, "child<")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(t, ">")
}

// QOMList lists the properties (and children) of the object at path, e.g.
// "/machine/peripheral" holds the devices given an id with -device.
func (c *Client) QOMList(ctx context.Context, path string) ([]ObjectProperty, error) {
	var props []ObjectProperty
	err := c.Execute(ctx, "qom-list", map[string]string{"path": path}, &props)
	return props, err
}

// QOMGet reads one property of a QOM object into out, e.g. the machine's
// "type" ("pc-i440fx-7.2-machine") or a NIC's "mac".
func (c *Client) QOMGet(ctx context.Context, path, property string, out any) error {
	return c.Execute(ctx, "qom-get", map[string]string{"path": path, "property": property}, out)
}
