// `make fixtures`: writes the generated test models into test/fixtures/models.
import { tinyModel } from "./fixtures.js";

process.stdout.write(`fixture ${tinyModel()}\n`);
