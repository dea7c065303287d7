"""The request path: RequestContext and the ordered stages that handle it."""
