// The front's check of an inference request's JSON, before Triton parses it (nginx njs, `js_content`).
//
// Triton 2.51 allocates what a JSON request declares before it reads the data: 90 bytes declaring
// [4294967297,28,28,1] kill it (std::bad_alloc). The location that calls `infer` holds the served
// model's name in $guard_model and its limits in $guard_limits (JSON: input name -> most elements,
// from its config.pbtxt: pipelines/serving/guard.py); its client_body_buffer_size keeps the whole body in
// memory. A binary request (Inference-Header-Content-Length) has its JSON header checked the same way.
// A request that passes goes on, unchanged, to the location @triton.

function refuse(r, status, reason) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify({error: reason + ' (refused by the front)'}));
}

function problem(request, model, limits) {
    if (request === null || typeof request !== 'object' || !Array.isArray(request.inputs)) {
        return "the request has no 'inputs' list";
    }
    const seen = {};
    for (let i = 0; i < request.inputs.length; i++) {
        const input = request.inputs[i];
        if (input === null || typeof input !== 'object' || typeof input.name !== 'string') {
            return 'input ' + i + ' has no name';
        }
        const name = input.name;
        if (!Object.prototype.hasOwnProperty.call(limits, name)) {
            return "model '" + model + "' has no input '" + name + "'";
        }
        if (seen[name]) {
            return "input '" + name + "' appears twice";
        }
        seen[name] = true;
        if (!Array.isArray(input.shape)) {
            return "input '" + name + "' has no shape list";
        }
        let elements = 1;
        for (let d = 0; d < input.shape.length; d++) {
            const dim = input.shape[d];
            if (!Number.isInteger(dim) || dim < 0) {
                return "input '" + name + "' has shape " + JSON.stringify(input.shape) +
                       ': dimensions must be non-negative integers';
            }
            elements *= dim;
        }
        if (elements > limits[name]) {
            return "input '" + name + "' declares shape " + JSON.stringify(input.shape) + ' (' + elements +
                   " elements); model '" + model + "' takes at most " + limits[name];
        }
    }
    return null;
}

function infer(r) {
    const body = r.requestBuffer;
    if (body === undefined || body.length === 0) {
        r.internalRedirect('@triton');  // no body: Triton answers that itself
        return;
    }
    let text = body;
    const declared = r.headersIn['Inference-Header-Content-Length'];
    if (declared !== undefined) {
        const length = Number(declared);
        if (!Number.isInteger(length) || length < 0 || length > body.length) {
            refuse(r, 400, 'Inference-Header-Content-Length ' + JSON.stringify(declared) +
                           ' is not a length within the body (' + body.length + ' bytes)');
            return;
        }
        text = body.slice(0, length);
    }
    let request;
    try {
        request = JSON.parse(text.toString());
    } catch (e) {
        refuse(r, 400, 'the request is not JSON: ' + e.message);
        return;
    }
    const model = r.variables.guard_model;
    const reason = problem(request, model, JSON.parse(r.variables.guard_limits));
    if (reason !== null) {
        refuse(r, 400, reason);
        return;
    }
    r.internalRedirect('@triton');
}

export default {infer};
