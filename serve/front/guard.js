// The front's check of an inference request, before Triton reads it (nginx njs, `js_content`).
//
// Triton 2.51 allocates what a JSON request declares before it reads the data: 90 bytes declaring
// [4294967297,28,28,1] kill it (std::bad_alloc). The location that calls `infer` holds the served
// model's name in $guard_model and its limits in $guard_limits (JSON, from its config.pbtxt:
// pipelines/serving/guard.py): `inputs` (input name -> [most elements, most JSON characters an
// element takes]), `depth` (deepest nesting), `header` (largest JSON header of a binary request, and
// the room a JSON request has beside its data), `json` (its largest JSON request). A JSON request may
// be no longer than the shapes it declares need. Its client_body_buffer_size keeps the whole body in
// memory. A request that passes goes on, unchanged, to the location @triton.
//
// No parser differential: the check reads the JSON as Triton's parser (rapidjson) would, or refuses
// it. rapidjson keeps the first of two equal keys and njs's JSON.parse the last, so a key repeated in
// any object is refused, as is anything but JSON's own tokens between strings and brackets (no
// comments, NaN or single quotes), nesting deeper than the protocol needs, and a repeated or
// non-decimal Inference-Header-Content-Length or Content-Encoding. The body is never handed to
// JSON.parse: one regular expression walks it (strings, brackets, and any character JSON does not
// allow between them), so a large number array costs a scan, not millions of JavaScript numbers; only
// each input's name and shape are decoded. A binary request's tensors are not read at all.

// One token: a string (with a following ':' when it is a key), a flat list of digits (a shape, or integer data: one
// token, so that a shape's text needs no index), a bracket, or a character that no JSON value has outside strings
// (letters other than those of true/false/null and exponents, '/', '*', quotes). Numbers, commas and whitespace
// between tokens are skipped by the regular expression itself.
const TOKEN = /"[^"\\]*(?:\\.[^"\\]*)*"(?:\s*:)?|\[[\s0-9,]*\]|[{}[\]]|[^\s,:0-9eE+\-.truefalsn]/g;
// text up to this long (a binary request's JSON header: 150-450 characters for one to three inputs) is cut into
// its tokens by one native `match`, 2-5x faster in njs than an `exec` per token; longer text is walked token by
// token with the same expression, which stops at the first fault (njs's `match` grows worse than linearly: 8 KiB
// of brackets took 35 ms) and never holds millions of JavaScript strings at once. Both read the same tokens.
const MATCH_CHARS = 512;

const PREFIX_BYTES = 8192;
const SHAPE = /^\[\s*(?:[0-9]{1,19}\s*(?:,\s*[0-9]{1,19}\s*)*)?\]$/;

function refuse(r, status, reason) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify({error: reason + ' (refused by the front)'}));
}

function headerValues(r, name) {
    return r.rawHeadersIn.filter(function (h) { return h[0].toLowerCase() === name; })
        .map(function (h) { return h[1]; });
}

function decoded(raw) {
    return raw.indexOf('\\') < 0 ? raw : JSON.parse('"' + raw + '"');
}

// Why the input in `frame` is refused, or null; `sizes.json` adds the JSON its data may take.
function inputProblem(frame, model, limits, seen, sizes) {
    const name = frame.name;
    if (typeof name !== 'string') {
        return 'input ' + frame.index + ' has no name';
    }
    if (!Object.prototype.hasOwnProperty.call(limits, name)) {
        return "model '" + model + "' has no input '" + name + "'";
    }
    if (seen[name] === true) {
        return "input '" + name + "' appears twice";
    }
    seen[name] = true;
    if (typeof frame.shape !== 'string') {
        return "input '" + name + "' has no shape list";
    }
    if (!SHAPE.test(frame.shape)) {  // 1e3 or 4.0 are numbers to njs, not the integers Triton reads
        return "input '" + name + "' has shape " + (frame.shape || 'holding more than digits') +
               ': dimensions must be non-negative decimal integers';
    }
    const shape = JSON.parse(frame.shape);
    let elements = 1;
    const most = limits[name][0];
    for (let d = 0; d < shape.length; d++) {
        if (shape[d] > most) {  // also where another dimension is 0
            return "input '" + name + "' declares shape " + frame.shape + "; model '" + model + "' takes at most " +
                   most + ' elements';
        }
        elements *= shape[d];
    }
    if (elements > most) {
        return "input '" + name + "' declares shape " + JSON.stringify(shape) + ' (' + elements +
               " elements); model '" + model + "' takes at most " + most;
    }
    sizes.json += elements * limits[name][1];
    return null;
}

// The tokens of `text`, one at a time (`next()` gives the next, or null).
function tokens(text) {
    TOKEN.lastIndex = 0;
    if (text.length <= MATCH_CHARS) {
        const all = text.match(TOKEN) || [];
        let i = 0;
        return function () { return i < all.length ? all[i++] : null; };
    }
    return function () {
        const m = TOKEN.exec(text);
        return m === null ? null : m[0];
    };
}

// Why the request's JSON is refused, or null: one walk over its strings and brackets. `sizes.json`: the most
// JSON the data of the inputs it declares can take. `prefix`: `text` is only the body's beginning, so what is
// cut off (a string, the closing brackets) is no fault; only what lies wholly within it is judged.
function problem(text, model, limits, sizes, prefix) {
    const stack = [];
    const seen = Object.create(null);  // input names: "__proto__" included
    const next = tokens(text);
    let root = null;
    let inputs = 0;
    let token;
    while ((token = next()) !== null) {
        const first = token.charCodeAt(0);
        const top = stack.length ? stack[stack.length - 1] : null;
        if (first === 91 || first === 123) {  // '[' or '{': a flat list of digits opens and closes here
            if (stack.length >= limits.depth) {
                return 'the request nests deeper than ' + limits.depth + ' levels';
            }
            if (top === null && root !== null) {
                return 'the request holds more than one JSON value';
            }
            const key = top !== null && top.object ? top.pending : null;
            const frame = {object: first === 123, keys: Object.create(null), pending: null, key: key, parent: top};
            if (top === null) {
                root = frame;
            } else if (top.object) {
                top.pending = null;
            }
            if (token.length > 1) {  // a flat list: closed at once
                if (key === 'shape' && top.input) {
                    top.shape = token;
                } else if (key === 'inputs' && top === root) {
                    root.inputs = true;
                }
                continue;
            }
            if (frame.object && top !== null && top.key === 'inputs' && top.parent === root) {
                frame.index = inputs++;  // an input
                frame.input = true;
            }
            stack.push(frame);
            continue;
        }
        if (first === 93 || first === 125) {  // ']' or '}'
            if (top === null || top.object !== (first === 125)) {
                return 'the request is not JSON: an unbalanced ' + JSON.stringify(token);
            }
            stack.pop();
            const parent = top.parent;
            if (!top.object && top.key === 'shape' && parent !== null && parent.input) {
                parent.shape = '';  // a list holding more than digits: no shape Triton takes
            } else if (!top.object && top.key === 'inputs' && parent === root) {
                root.inputs = true;
            }
            if (top.input) {
                const reason = inputProblem(top, model, limits.inputs, seen, sizes);
                if (reason !== null) {
                    return reason;
                }
            }
            continue;
        }
        if (first !== 34 || token.length === 1) {  // not a string: a character JSON does not have here
            if (prefix) {
                return null;  // perhaps a string cut in two: the whole body's walk decides
            }
            return 'the request is not JSON: ' + JSON.stringify(token);
        }
        if (top === null) {
            return 'the request is not a JSON object';
        }
        const isKey = token.charCodeAt(token.length - 1) === 58;  // ':'
        if (!isKey && !(top.input && top.pending === 'name')) {
            if (top.object) {
                top.pending = null;  // a value nobody reads: its escapes are judged by Triton alone
            }
            continue;  // (in an array: data)
        }
        if (!top.object) {
            return 'the request is not JSON: a key in a list';
        }
        let value;
        try {
            value = decoded(isKey ? token.slice(1, token.lastIndexOf('"')) : token.slice(1, -1));
        } catch (e) {
            return 'the request is not JSON: ' + e.message;
        }
        if (isKey) {
            if (top.keys[value] === true) {
                return "the request repeats the key " + JSON.stringify(value) + ' in one object (Triton would read ' +
                       'the first, this check the last)';
            }
            top.keys[value] = true;
            top.pending = value;
        } else {
            top.name = value;
            top.pending = null;
        }
    }
    if (prefix) {
        return null;
    }
    if (root === null || !root.object) {
        return 'the request is not a JSON object';
    }
    if (stack.length) {
        return 'the request is not JSON: it ends inside ' + stack.length + ' open bracket(s)';
    }
    if (!root.inputs) {
        return "the request has no 'inputs' list";
    }
    return null;
}

// $guard_json_over (js_set, read in the rewrite phase, before the body): the model's JSON limit when a request
// without binary tensors announces a longer body, else ''.
function jsonOver(r) {
    if (headerValues(r, 'inference-header-content-length').length) {
        return '';
    }
    const limit = JSON.parse(r.variables.guard_limits).json;
    return Number(r.headersIn['Content-Length'] || 0) > limit ? String(limit) : '';
}

function infer(r) {
    const body = r.requestBuffer;
    if (body === undefined || body.length === 0) {
        r.internalRedirect('@triton');  // no body: Triton answers that itself
        return;
    }
    const limits = JSON.parse(r.variables.guard_limits);
    const seen = {'inference-header-content-length': [], 'content-encoding': [], 'content-type': []};
    const raw = r.rawHeadersIn;  // one pass: the headers Triton reads, each at most once
    for (let i = 0; i < raw.length; i++) {
        const values = seen[raw[i][0].toLowerCase()];
        if (values !== undefined) {
            values.push(raw[i][1]);
            if (values.length > 1) {
                refuse(r, 400, 'the request repeats the header ' + raw[i][0].toLowerCase());
                return;
            }
        }
    }
    let text = body;
    const declared = seen['inference-header-content-length'];
    if (!declared.length && body.length > limits.json) {  // a chunked body: its length is known only now
        refuse(r, 413, 'a JSON request to model ' + r.variables.guard_model + ' takes at most ' + limits.json +
                       ' bytes; send large tensors as binary data');
        return;
    }
    if (declared.length) {
        const length = /^[0-9]{1,10}$/.test(declared[0]) ? Number(declared[0]) : -1;
        if (length < 0 || length > body.length) {
            refuse(r, 400, 'Inference-Header-Content-Length ' + JSON.stringify(declared[0]) +
                           ' is not a decimal length within the body (' + body.length + ' bytes)');
            return;
        }
        if (length > limits.header) {
            refuse(r, 413, 'the JSON header of a binary request takes at most ' + limits.header + ' bytes; this one ' +
                           length);
            return;
        }
        text = body.slice(0, length);
    }
    const sizes = {json: 0};
    // a large JSON body is first judged by its beginning: 300 KB of brackets are refused for their depth without
    // the whole body being decoded (about 14 ms a MB here) and walked
    let reason = null;
    if (!declared.length && body.length > PREFIX_BYTES) {
        reason = problem(body.slice(0, PREFIX_BYTES).toString(), r.variables.guard_model, limits, {json: 0}, true);
    }
    reason = reason || problem(text.toString(), r.variables.guard_model, limits, sizes, false);
    if (reason !== null) {
        refuse(r, 400, reason);
        return;
    }
    if (!declared.length && body.length > sizes.json + limits.header) {
        refuse(r, 413, 'the request is ' + body.length + ' bytes of JSON; the shapes it declares take at most ' +
                       (sizes.json + limits.header));
        return;
    }
    r.internalRedirect('@triton');
}

// A request that found no replica ready (502, 503) waits here, with its body, while supervision restarts one:
// the replicas' /v2/health/ready ($guard_replicas) is polled until one answers or $guard_wait_ms pass, then the
// request goes to @triton again. A request that reached Triton and lost its connection was in flight when Triton
// died: once a replica is ready it is sent again through @quarantine, which takes one request per replica at a
// time, so that a request that did not cause the crash succeeds, and the one that did dies alone with its replica.
// A request in flight at two crashes is not sent again, and the log marks it (guard=culprit) so that the front
// refuses its sender for a while (pipelines/serving/balancer.py). gRPC cannot wait: nginx streams its bodies.
const POLL_MS = 200;
const MAX_ROUNDS = 4;  // nginx allows 10 internal redirects a request: an error page and a redirect per round

// How many replica deaths this request was in flight at: per attempt (nginx's variables list the attempts, ", "
// between replicas tried in one pass and " : " between passes), a connection made and lost without an answer;
// a replica counted once per pass (nginx may try a single replica again while it dies).
function crashesSeen(r) {
    const passes = function (name) { return (r.variables[name] || '').split(' : '); };
    const statuses = passes('upstream_status');
    const connects = passes('upstream_connect_time');
    const addresses = passes('upstream_addr');
    let crashes = 0;
    for (let p = 0; p < statuses.length; p++) {
        const status = statuses[p].split(', ');
        const connect = (connects[p] || '').split(', ');
        const address = (addresses[p] || '').split(', ');
        const died = {};
        for (let i = 0; i < status.length; i++) {
            if (status[i] === '502' && connect[i] !== undefined && connect[i] !== '' && connect[i] !== '-') {
                died[address[i]] = true;  // connected, then the connection died without an answer
            }
        }
        crashes += Object.keys(died).length;
    }
    return crashes;
}

function wait(r) {
    if (crashesSeen(r) >= 2) {
        r.variables.guard_verdict = 'culprit';
        refuse(r, 502, 'this request was in flight at two crashes of Triton: it is not sent again, and its sender ' +
                       'is refused for a while');
        return;
    }
    const rounds = Number(r.variables.guard_waited) + 1;
    r.variables.guard_waited = String(rounds);
    const budget = Number(r.variables.guard_wait_ms);
    if (rounds > MAX_ROUNDS || budget <= 0) {
        refuse(r, 503, 'no Triton replica is ready (waited ' + (rounds - 1) + ' times)');
        return;
    }
    const replicas = r.variables.guard_replicas.split(',');
    const deadline = Date.now() + budget;
    const crashed = crashesSeen(r) > 0;
    function poll() {
        Promise.all(replicas.map(function (replica) {
            return ngx.fetch('http://' + replica + '/v2/health/ready', {max_response_body_size: 64})
                .then(function (reply) { return reply.status === 200; }, function () { return false; });
        })).then(function (ready) {
            if (ready.indexOf(true) >= 0 && crashed) {  // spread out, one at a time per replica
                setTimeout(function () { r.internalRedirect('@quarantine'); }, Math.random() * 1000);
            } else if (ready.indexOf(true) >= 0) {
                r.internalRedirect('@triton');
            } else if (Date.now() >= deadline) {
                refuse(r, 503, 'no Triton replica became ready within ' + budget / 1000 + ' s');
            } else {
                setTimeout(poll, POLL_MS);
            }
        });
    }
    poll();
}

export default {infer, jsonOver, wait};
