// Applies the saved theme before the first paint (a classic script, so it runs before layout).
(function () {
  try {
    var t = localStorage.getItem('akhrot-theme');
    if (t === 'light' || t === 'dark') document.documentElement.setAttribute('data-theme', t);
  } catch (e) { /* storage refused: follow the system */ }
})();
