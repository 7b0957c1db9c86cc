package httpapi

// Documented is a Module that describes its routes for the API's OpenAPI
// document (GET /v1/openapi.json). Every route a module adds must have
// one Op, with the same method and path; a test of the wired controller
// holds every module to it.
type Documented interface {
	OpenAPI() []Op
}

// Op describes one route. Schemas are derived from the Go values given
// for Body and Response (their JSON encoding: field names, omitempty and
// omitzero fields optional, no other properties), so the document follows
// the types the handlers use. Slices and maps may encode as null; a field
// tagged `openapi:"nonnull"` is documented as never null.
type Op struct {
	// Method and Path are the route as registered (gin syntax, relative
	// to /v1: "/users/:name").
	Method string
	Path   string
	// Summary says what the route does, in one line.
	Summary string
	// Tag groups the route in the document (usually the module's name).
	Tag string
	// Params are query parameters; path parameters come from Path.
	Params []Param
	// Paged adds ?limit= and ?offset= (see ParsePage).
	Paged bool
	// Body is a value of the JSON request body's type; nil means none.
	Body any
	// BodyType is the request body's media type when it is not JSON
	// (Body is then ignored and the body is described as text).
	BodyType string
	// Status is the success status (default 200).
	Status int
	// Response is a value of the JSON response body's type; nil means an
	// empty response.
	Response any
	// ResponseType is the response's media type when it is not JSON.
	ResponseType string
}

// Param is one query parameter of an Op.
type Param struct {
	Name        string
	Description string
	// Type is "string" (default), "integer" or "boolean".
	Type string
	// Enum lists the allowed values, if they are few.
	Enum []string
	// Required is true when the route refuses a request without it.
	Required bool
}

// PageParams are the query parameters of a paged listing, for modules
// that describe them by hand.
func PageParams() []Param {
	return []Param{
		{Name: "limit", Type: "integer", Description: "page size, 1 to the listing's maximum (default 100, at most 1000 unless said)"},
		{Name: "offset", Type: "integer", Description: "items to skip, from 0"},
	}
}
