// The notice page: the shell puts {title, message} in window.AKHROT_NOTICE before the page loads.
const notice = window.AKHROT_NOTICE || {};
document.getElementById('title').textContent = notice.title || 'Akhrot';
document.getElementById('message').textContent = notice.message || '';
document.title = `Akhrot: ${notice.title || ''}`;
