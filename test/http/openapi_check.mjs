// Checks the OpenAPI description served at /api/v1/auth/ (docs/openapi.json)
// for test/t/024_openapi.pl:
//
//   node openapi_check.mjs validate FILE
//       validates FILE with @apidevtools/swagger-parser (the OpenAPI 3.0
//       schema, then every $ref resolved); prints "valid: TITLE VERSION".
//
// The packages come from HK_NODE_MODULES (default: node_modules at the top
// of this tree), installed by `npm ci --ignore-scripts` (package.json).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const top = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const modules = process.env.HK_NODE_MODULES || path.join(top, 'node_modules');
const require = createRequire(path.join(modules, 'noop.js'));

const [cmd, file] = process.argv.slice(2);
if (cmd !== 'validate' || !file) {
	console.error('usage: node openapi_check.mjs validate FILE');
	process.exit(2);
}
const SwaggerParser = require('@apidevtools/swagger-parser');
try {
	const api = await SwaggerParser.validate(path.resolve(file));
	console.log(`valid: ${api.info.title} ${api.info.version} (OpenAPI ${api.openapi})`);
} catch (e) {
	console.error(`invalid: ${e.message}`);
	process.exit(1);
}
