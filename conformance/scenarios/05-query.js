// Twin queries with paging.
'use strict';
const { createDevice, registry, uniqueId, assert } = require('../lib');

exports.paging = async () => {
  const tag = uniqueId('batch');
  for (let i = 0; i < 5; i++) {
    const { id } = await createDevice('query');
    await registry().updateTwin(id, { tags: { batch: tag } }, '*');
  }
  const query = registry().createQuery(`SELECT * FROM devices WHERE tags.batch = '${tag}'`, 2);
  let total = 0;
  let pages = 0;
  do {
    const { result } = await query.nextAsTwin();
    total += result.length;
    pages++;
    assert(pages < 10, 'paging does not end');
  } while (query.hasMoreResults);
  assert(total === 5 && pages === 3, `got ${total} twins in ${pages} pages`);
  const count = registry().createQuery(`SELECT COUNT() AS n FROM devices WHERE tags.batch = '${tag}'`);
  const { result } = await count.next();
  assert(result[0].n === 5, JSON.stringify(result));
};
