// Every snapshot kind this build can serve. Importing this module registers each kind's PageSource
// factory (src/memory/snapshot.ts); a new kind is a new module plus one line here.
import './memfile.js';
import './chunked-source.js';
