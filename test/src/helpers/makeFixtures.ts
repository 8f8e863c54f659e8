// `make fixtures`: writes the generated test models into test/fixtures/models.
import { eosEagerModel, tinyGemma3Mmproj, tinyMmproj, tinyModel, tinyQwen25vlMmproj, tinyQwen2vlModel, toolEagerModel } from "./fixtures.js";

for (const file of [tinyModel(), eosEagerModel(), toolEagerModel(), tinyMmproj(), tinyGemma3Mmproj(), tinyQwen2vlModel(), tinyQwen25vlMmproj()]) process.stdout.write(`fixture ${file}\n`);
